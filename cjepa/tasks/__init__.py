"""What the trainer trains: the :class:`~cjepa.tasks.base.Task` contract, its shared base, and the registry
``train.task`` reads (:mod:`cjepa.tasks.registry`)."""
