"""Where an artifact's file lives. Two areas, one on each side of the privacy boundary:

- `server`: KSG_ARTIFACT_DIR, mounted on every process (worker-server included). It holds only
  aggregates and DP outputs: adapters trained with DP-SGD and what is computed from them.
- `client`: KSG_PRIVATE_DIR/artifacts, on the private volume (web and worker-client only). It holds
  whatever quotes private records (evaluation excerpts, per-record scores, canary secrets) and
  models fit to them without DP. A server-side stage cannot get a path here (jobs.runner).
"""
import hashlib
from pathlib import Path

from django.conf import settings

CLIENT_ARTIFACTS = "artifacts"  # the client area's folder under KSG_PRIVATE_DIR


def artifact_root(area: str) -> Path:
    """The resolved root directory of an area ("server" or "client")."""
    if area == "server":
        return Path(settings.KSG_ARTIFACT_DIR).resolve()
    if area == "client":
        return (Path(settings.KSG_PRIVATE_DIR) / CLIENT_ARTIFACTS).resolve()
    raise ValueError(f"unknown artifact area {area!r}")


def artifact_area_of(path: Path) -> tuple[str, Path]:
    """(area, root) of a path a stage wrote: the client area if it lies under it, else the server
    area; ValueError if it lies in neither."""
    path = Path(path).resolve()
    for area in ("client", "server"):  # the client root may sit inside the server root's parent
        root = artifact_root(area)
        if path.is_relative_to(root):
            return area, root
    raise ValueError(f"artifact {path} is outside both artifact areas ({artifact_root('server')}, "
                     f"{artifact_root('client')})")


def artifact_file(artifact) -> Path | None:
    """The artifact's resolved file or directory, if it still exists inside its area's root
    (a path that resolves outside, through `..` or a symlink, gives None)."""
    root = artifact_root(artifact.area)
    path = (root / artifact.path).resolve()
    return path if path.is_relative_to(root) and path.exists() else None


def artifact_checksum(path: Path) -> tuple[str, int]:
    """(sha256, bytes) of a file, or of a directory's files in name order with their names."""
    digest, size = hashlib.sha256(), 0
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for file in files:
        if path.is_dir():
            digest.update(str(file.relative_to(path)).encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
                size += len(block)
    return digest.hexdigest(), size
