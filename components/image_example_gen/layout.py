"""Which files of an image folder are candidate images, and which are rejected before decoding.

The layout is the one Keras' ``image_dataset_from_directory`` reads:
``<root>/<class_name>/<file>``, class ids = positions in the sorted class folder names.
Works on any file system ``tf.io.gfile`` knows (local, gs://).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import List, Tuple

import tensorflow as tf

# Accepted image file extensions (compared lower-case). The format itself is read from the bytes.
IMAGE_EXTENSIONS = (".bmp", ".gif", ".jpeg", ".jpg", ".png")


@dataclass(frozen=True)
class FolderListing:
    """What an image folder holds, before any file is read.

    ``class_names`` are the sorted names of the class folders holding at least one candidate
    file; ``empty_class_folders`` the sorted names of those holding none (they are not
    classes: a class no image shows cannot be learned). ``candidates`` are (relative path,
    class name) pairs of files to decode; ``rejected`` are (relative path, reason) pairs.
    Paths use '/' and are relative to the input base (``prefix`` included).
    """

    class_names: Tuple[str, ...]
    candidates: Tuple[Tuple[str, str], ...]
    rejected: Tuple[Tuple[str, str], ...]
    empty_class_folders: Tuple[str, ...] = ()


def _is_hidden(name: str) -> bool:
    # .DS_Store, editor swap files and our dataset marker are metadata, not data.
    return name.startswith(".")


def _list(path: str) -> List[str]:
    # GCS listings end directory names with '/'.
    return sorted(name.rstrip("/") for name in tf.io.gfile.listdir(path))


def list_image_folder(input_base: str, prefix: str = "") -> FolderListing:
    """Lists ``<input_base>/<prefix>`` as a class-per-folder image tree.

    Files directly in the root, files nested below a class folder and files whose extension
    is not in ``IMAGE_EXTENSIONS`` are rejected with a reason; hidden entries (names starting
    with '.') are ignored. Raises FileNotFoundError if the root is not a directory.
    """
    root = posixpath.join(input_base, prefix) if prefix else input_base
    if not tf.io.gfile.isdir(root):
        raise FileNotFoundError(f"{root}: image folder not found")

    def rel(*parts: str) -> str:
        return posixpath.join(prefix, *parts) if prefix else posixpath.join(*parts)

    class_names: List[str] = []
    empty: List[str] = []
    candidates: List[Tuple[str, str]] = []
    rejected: List[Tuple[str, str]] = []

    def reject_tree(path: str, rel_parts: Tuple[str, ...]) -> None:
        for name in _list(path):
            if _is_hidden(name):
                continue
            child = posixpath.join(path, name)
            if tf.io.gfile.isdir(child):
                reject_tree(child, rel_parts + (name,))
            else:
                rejected.append(
                    (rel(*rel_parts, name), "nested below a class folder (expected <class>/<file>)")
                )

    for name in _list(root):
        if _is_hidden(name):
            continue
        path = posixpath.join(root, name)
        if not tf.io.gfile.isdir(path):
            rejected.append((rel(name), "not inside a class folder (expected <class>/<file>)"))
            continue
        before = len(candidates)
        for file_name in _list(path):
            if _is_hidden(file_name):
                continue
            file_path = posixpath.join(path, file_name)
            if tf.io.gfile.isdir(file_path):
                reject_tree(file_path, (name, file_name))
                continue
            extension = posixpath.splitext(file_name)[1].lower()
            if extension not in IMAGE_EXTENSIONS:
                shown = extension or "(none)"
                rejected.append(
                    (
                        rel(name, file_name),
                        f"unsupported extension {shown} (accepted: {' '.join(IMAGE_EXTENSIONS)})",
                    )
                )
                continue
            candidates.append((rel(name, file_name), name))
        (class_names if len(candidates) > before else empty).append(name)

    return FolderListing(tuple(class_names), tuple(candidates), tuple(sorted(rejected)), tuple(empty))
