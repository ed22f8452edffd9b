"""ImageExampleGen: an image folder or TFRecords of images in, tf.Examples and a list of rejected files out.

Import the component from ``components.image_example_gen.component``; this package
imports nothing so that light helpers (``layout``) stay cheap to import.
"""
