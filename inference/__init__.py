"""Offline inference without a server: TFLite interpreter and SavedModel batch prediction over files."""
