"""Training a classifier: config, start-up (open_training_run), the images, augmentation, schedule, the loop and
calibration. ``train(open_training_run(data_dir, out, cfg))`` is the entry point."""
