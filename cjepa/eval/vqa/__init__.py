"""CLEVRER-style VQA on slot videos with the ALOE reasoner (spec section 6).

Modules: ``text`` (tokenisation, vocabularies), ``questions`` (CLEVRER-schema question files, removed-object
names), ``data`` (frame windows per question and protocol, batching), ``model`` (the reasoner, pure torch),
``metrics`` (the original scoring), ``evaluate`` (deterministic evaluation over fixed offsets), ``rollouts``
(factual and counterfactual slot rollouts with the C-JEPA predictor), ``reasoner`` (train, load and evaluate a
reasoner; the training task itself is :mod:`cjepa.tasks.vqa`). The masking study that ties predictor training to VQA
lives in ``cjepa.eval.masking_study``.
"""
