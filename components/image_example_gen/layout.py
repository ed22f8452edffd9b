"""Which files of an image folder are candidate images, and which are rejected before decoding.

The layout is the one Keras' ``image_dataset_from_directory`` reads:
``<root>/<class_name>/<file>``, class ids = positions in the sorted class folder names.
Works on any file system ``tf.io.gfile`` knows (local, gs://).
"""

from __future__ import annotations

import posixpath
from dataclasses import dataclass
from typing import Iterator, List, Tuple

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


CANDIDATE = "candidate"
REJECTED = "rejected"
Entry = Tuple[str, str, str]  # (CANDIDATE, relative path, class name) or (REJECTED, relative path, reason)


def _is_hidden(name: str) -> bool:
    # .DS_Store, editor swap files and our dataset marker are metadata, not data.
    return name.startswith(".")


def _list(path: str) -> List[str]:
    # GCS listings end directory names with '/'.
    return sorted(name.rstrip("/") for name in tf.io.gfile.listdir(path))


def _rel(prefix: str, *parts: str) -> str:
    return posixpath.join(prefix, *parts) if prefix else posixpath.join(*parts)


def _root(input_base: str, prefix: str) -> str:
    root = posixpath.join(input_base, prefix) if prefix else input_base
    if not tf.io.gfile.isdir(root):
        raise FileNotFoundError(f"{root}: image folder not found")
    return root


def _reject_tree(path: str, rel_parts: Tuple[str, ...], prefix: str) -> Iterator[Entry]:
    for name in _list(path):
        if _is_hidden(name):
            continue
        child = posixpath.join(path, name)
        if tf.io.gfile.isdir(child):
            yield from _reject_tree(child, rel_parts + (name,), prefix)
        else:
            yield REJECTED, _rel(prefix, *rel_parts, name), "nested below a class folder (expected <class>/<file>)"


def iter_class_folder(input_base: str, prefix: str, name: str) -> Iterator[Entry]:
    """(CANDIDATE, relative path, class name) or (REJECTED, relative path, reason) for each file of one class folder.

    One folder at a time, in sorted order, so a caller never holds the whole tree's listing.
    """
    path = posixpath.join(_root(input_base, prefix), name)
    for file_name in _list(path):
        if _is_hidden(file_name):
            continue
        file_path = posixpath.join(path, file_name)
        if tf.io.gfile.isdir(file_path):
            yield from _reject_tree(file_path, (name, file_name), prefix)
            continue
        extension = posixpath.splitext(file_name)[1].lower()
        if extension not in IMAGE_EXTENSIONS:
            shown = extension or "(none)"
            reason = f"unsupported extension {shown} (accepted: {' '.join(IMAGE_EXTENSIONS)})"
            yield REJECTED, _rel(prefix, name, file_name), reason
            continue
        yield CANDIDATE, _rel(prefix, name, file_name), name


def list_class_folders(input_base: str, prefix: str = "") -> FolderListing:
    """The class folders of ``<input_base>/<prefix>`` without listing their files into memory.

    ``class_names`` and ``empty_class_folders`` are those of list_image_folder (a folder is a
    class once one candidate file is found in it); ``rejected`` holds only the files directly in
    the root; ``candidates`` is empty: iter_class_folder yields each class folder's files.
    Raises FileNotFoundError if the root is not a directory.
    """
    root = _root(input_base, prefix)
    class_names: List[str] = []
    empty: List[str] = []
    rejected: List[Tuple[str, str]] = []
    for name in _list(root):
        if _is_hidden(name):
            continue
        if not tf.io.gfile.isdir(posixpath.join(root, name)):
            rejected.append((_rel(prefix, name), "not inside a class folder (expected <class>/<file>)"))
            continue
        has_candidate = any(kind == CANDIDATE for kind, _, _ in iter_class_folder(input_base, prefix, name))
        (class_names if has_candidate else empty).append(name)
    return FolderListing(tuple(class_names), (), tuple(sorted(rejected)), tuple(empty))


def list_image_folder(input_base: str, prefix: str = "") -> FolderListing:
    """Lists ``<input_base>/<prefix>`` as a class-per-folder image tree.

    Files directly in the root, files nested below a class folder and files whose extension
    is not in ``IMAGE_EXTENSIONS`` are rejected with a reason; hidden entries (names starting
    with '.') are ignored. Raises FileNotFoundError if the root is not a directory.
    Holds every file's name: for a large tree use list_class_folders and iter_class_folder.
    """
    folders = list_class_folders(input_base, prefix)
    candidates: List[Tuple[str, str]] = []
    rejected: List[Tuple[str, str]] = list(folders.rejected)
    for name in folders.class_names + folders.empty_class_folders:
        for kind, rel, value in iter_class_folder(input_base, prefix, name):
            (candidates if kind == CANDIDATE else rejected).append((rel, value))
    return FolderListing(folders.class_names, tuple(candidates), tuple(sorted(rejected)), folders.empty_class_folders)
