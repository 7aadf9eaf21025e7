"""Planning with latent world models: CEM-MPC (``cem``, ``mpc``), batched slot matching (``matching``), the
world-model protocol and the slot world model (``world_model``), and the Push-T evaluation (``evaluate``)."""
