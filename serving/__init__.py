"""lenspipe's TensorFlow Serving-compatible model server and client.

Serves any SavedModel base path in the TF Serving layout (`<base>/<integer version>/saved_model.pb`)
with TF Serving's flags, REST URLs, JSON, status codes and gRPC services. Imports nothing from the
rest of lenspipe on purpose: the same base path can be served by the real `tensorflow/serving` image.
"""
