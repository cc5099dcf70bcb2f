"""What train_sft.py and train_grip.py are built from (no trainer, no callbacks: each script keeps its
loop): config (dataclasses, TOML presets, overrides), setup (policy, optimizer, schedule, precision),
run (a run's state: open, start or resume, checkpoint), run_dir (lock, metrics log, progress line),
checkpoint (the on-disk layout), resume, validation, launch (the scripts' __main__), random_init (the
tiny random model) and sft_jsonl (SFT data files)."""
