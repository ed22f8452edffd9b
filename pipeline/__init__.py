"""lenspipe: a TFX pipeline from a folder of images to a TF Serving model base path."""
