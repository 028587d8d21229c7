"""Where a bench writes (a temporary folder or --out, never the data folder) and how much it wrote."""
import os
import shutil
import tempfile
from typing import Optional


def make_out_dir(out: Optional[str], prefix: str) -> str:
    """--out (created) or a fresh temporary folder."""
    if out:
        os.makedirs(out, exist_ok=True)
        return os.path.abspath(out)
    return tempfile.mkdtemp(prefix=prefix)


def remove_out_dir_unless_kept(out: str, keep: bool) -> None:
    """Deletes a bench's temporary output folder, or says where its outputs are kept."""
    if keep:
        print(f"outputs kept under {out}")
    else:
        shutil.rmtree(out, ignore_errors=True)


def check_not_inside(path: str, data_dir: str) -> None:
    """Refuses to write into the data folder (the input is only ever read)."""
    path, data_dir = os.path.realpath(path), os.path.realpath(data_dir)
    if path == data_dir or path.startswith(data_dir + os.sep):
        raise SystemExit(f"refusing to write under the data folder {data_dir}: choose another --out")


def dir_bytes(path: str) -> int:
    """Bytes of the regular files under `path` (links not followed, not counted)."""
    if os.path.isfile(path):
        return os.path.getsize(path)
    total = 0
    for folder, _, files in os.walk(path):
        for name in files:
            file_path = os.path.join(folder, name)
            if not os.path.islink(file_path):
                total += os.path.getsize(file_path)
    return total
