"""Small helpers every wing uses: atomic writes (atomic), torchrun/DDP (dist), seeds and RNG states
(seeding) and warnings as one line (cli)."""
