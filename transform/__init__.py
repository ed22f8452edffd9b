"""Transform: the preprocessing_fn that becomes the training and serving graph."""
