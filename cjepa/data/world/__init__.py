"""The built-in physics world: CLEVRER-like videos with ground truth, generated on any machine in minutes.

Nobody should need CLEVRER's 24 GB download to try the system, and tests need videos whose every fact is known.
A world video shows 3-6 objects (sphere, cube, cylinder; CLEVRER's 8 colours; rubber or metal) resting,
moving and entering on a floor, colliding as rigid bodies (pymunk), rendered with numpy under a tilted
camera, with per-frame instance masks, object states, collision/entrance/exit events and CLEVRER-schema
questions whose answers come from the simulation (counterfactuals by re-simulating without an object).

    scene.py      attributes, camera, initial conditions (a scene is plain data)
    physics.py    simulation -> trajectories + collision events
    render.py     frames + masks from one coverage computation (masks match pixels exactly)
    annotate.py   per-frame facts, events, the CLEVRER-schema annotation
    questions.py  descriptive / explanatory / predictive / counterfactual questions
    generate.py   one video from (config, split, index); parallel splits into shards

``cjepa data world --split train --num-videos N --out DIR`` writes a split; :func:`generate_video` returns one.
"""

from cjepa.data.world.generate import WorldVideo, generate_split, generate_video

__all__ = ["WorldVideo", "generate_split", "generate_video"]
