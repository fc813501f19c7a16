"""Pack the container images the kubelet end-to-end tests run, without a registry or a
container engine: each is an OCI image layout in a tar (`oci-layout`, `index.json`,
`blobs/sha256/...`; one uncompressed layer), which `ctr images import` reads.

    python pack_image.py leakwatch --binary target/release/leakwatch \
        --dockerfile packaging/Dockerfile --config packaging/leakwatch.toml \
        --ref ghcr.io/leakwatch/leakwatch:0.1.0 --out leakwatch.tar
    python pack_image.py pause --binary pause --ref leakwatch.test/pause:e2e --out pause.tar

The leakwatch image holds what packaging/Dockerfile's final stage holds: the binary at
/usr/bin/leakwatch, the example config at /etc/leakwatch/leakwatch.toml, on the content of
distroless's cc-debian12:nonroot that the binary uses: Debian 12's libc6 and libgcc-s1
packages (every file each one installs, copied from this Debian 12 machine), an
/etc/passwd and /etc/group with root, nobody and nonroot (65532), /home/nonroot and /tmp.
Its USER, ENTRYPOINT, CMD and EXPOSE are read from the Dockerfile itself, so the tested
image cannot drift from what users build. (distroless also carries ca-certificates,
tzdata, libssl3, libstdc++6 and libgomp1, which leakwatch does not load.)

The pause image is one static binary, /pause, as the pod sandbox's process.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import re
import stat
import subprocess
import sys
import tarfile
from pathlib import Path

# A fixed time for every file and the image's creation: the same inputs pack to the same
# digests.
EPOCH = 0
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# distroless's base files for the nonroot variant.
PASSWD = """\
root:x:0:0:root:/root:/sbin/nologin
nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin
nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin
"""
GROUP = """\
root:x:0:
nobody:x:65534:
tty:x:5:
staff:x:50:
nonroot:x:65532:
"""
# The Debian packages of cc-debian12 that leakwatch's binary links against.
LIB_PACKAGES = ["libc6", "libgcc-s1"]


class Layer:
    """One layer's entries, written in path order with parents first."""

    def __init__(self) -> None:
        self.entries: dict[str, tuple[tarfile.TarInfo, bytes | None]] = {}

    def _info(self, path: str, kind: bytes, mode: int, uid: int = 0, gid: int = 0) -> tarfile.TarInfo:
        info = tarfile.TarInfo(path.strip("/"))
        info.type = kind
        info.mode = mode
        info.uid, info.gid = uid, gid
        info.uname = info.gname = ""
        info.mtime = EPOCH
        return info

    def _parents(self, path: str) -> None:
        parts = path.strip("/").split("/")[:-1]
        for i in range(1, len(parts) + 1):
            parent = "/".join(parts[:i])
            if parent not in self.entries:
                self.entries[parent] = (self._info(parent, tarfile.DIRTYPE, 0o755), None)

    def dir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        self._parents(path)
        self.entries[path.strip("/")] = (self._info(path, tarfile.DIRTYPE, mode, uid, gid), None)

    def file(self, path: str, data: bytes, mode: int = 0o644) -> None:
        self._parents(path)
        info = self._info(path, tarfile.REGTYPE, mode)
        info.size = len(data)
        self.entries[path.strip("/")] = (info, data)

    def symlink(self, path: str, target: str) -> None:
        self._parents(path)
        info = self._info(path, tarfile.SYMTYPE, 0o777)
        info.linkname = target
        self.entries[path.strip("/")] = (info, None)

    def copy(self, path: str, source: Path) -> None:
        """A host file or symlink (not followed) at `path`, with its permission bits."""
        st = source.lstat()
        if stat.S_ISLNK(st.st_mode):
            self.symlink(path, os.readlink(source))
        elif stat.S_ISREG(st.st_mode):
            self.file(path, source.read_bytes(), stat.S_IMODE(st.st_mode))
        elif stat.S_ISDIR(st.st_mode):
            self.dir(path, stat.S_IMODE(st.st_mode))
        else:
            raise SystemExit(f"pack_image: {source}: not a file, symlink or directory")

    def tar(self) -> bytes:
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:
            for name in sorted(self.entries):
                info, data = self.entries[name]
                tar.addfile(info, io.BytesIO(data) if data is not None else None)
        return out.getvalue()


def package_files(package: str) -> list[str]:
    """Every path the installed Debian package lists, as dpkg records it."""
    listed = subprocess.run(["dpkg", "-L", package], check=True, capture_output=True, text=True)
    return [p for p in listed.stdout.splitlines() if p.startswith("/") and p != "/."]


def add_package(layer: Layer, package: str) -> None:
    """A package's files at the paths it installs them to. On a merged-/usr host /lib is
    a symlink into /usr/lib; the image keeps the package's own paths (as distroless,
    which unpacks the .debs, does), reading them through the host's symlinks."""
    for path in package_files(package):
        source = Path(path)
        if not os.path.lexists(source):
            continue  # e.g. a file a local diversion moved
        if source.is_dir():
            layer.dir(path)  # a real directory in the image, even where the host links
        else:
            layer.copy(path, source)


def dockerfile_final_stage(dockerfile: Path) -> dict:
    """USER, ENTRYPOINT, CMD and EXPOSE of the Dockerfile's last stage (exec form only)."""
    stage: dict = {}
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        word, _, rest = line.partition(" ")
        word, rest = word.upper(), rest.strip()
        if word == "FROM":
            stage = {}
        elif word in ("ENTRYPOINT", "CMD"):
            try:
                argv = json.loads(rest)
            except json.JSONDecodeError:
                raise SystemExit(f"pack_image: {dockerfile}: {word} is not in exec (JSON) form: {rest}")
            stage[word] = argv
        elif word == "USER":
            stage["USER"] = rest
        elif word == "EXPOSE":
            stage["EXPOSE"] = rest.split()
    for key in ("USER", "ENTRYPOINT"):
        if key not in stage:
            raise SystemExit(f"pack_image: {dockerfile}: its last stage has no {key}")
    return stage


def blob(blobs: dict[str, bytes], data: bytes) -> dict:
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    blobs[digest] = data
    return {"digest": digest, "size": len(data)}


def write_layout(out: Path, ref: str, layer: Layer, config: dict, created_by: str) -> str:
    """The OCI layout tar for one single-layer amd64 image named `ref`; returns the
    manifest's digest."""
    blobs: dict[str, bytes] = {}
    layer_desc = blob(blobs, layer.tar())
    image_config = {
        "created": "1970-01-01T00:00:00Z",
        "architecture": "amd64",
        "os": "linux",
        "config": config,
        "rootfs": {"type": "layers", "diff_ids": [layer_desc["digest"]]},
        "history": [{"created": "1970-01-01T00:00:00Z", "created_by": created_by}],
    }
    config_desc = blob(blobs, json.dumps(image_config, sort_keys=True).encode())
    manifest = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json", **config_desc},
        "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar", **layer_desc}],
    }
    manifest_desc = blob(blobs, json.dumps(manifest, sort_keys=True).encode())
    tag = ref.rsplit(":", 1)[1] if ":" in ref.rsplit("/", 1)[-1] else "latest"
    index = {
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [
            {
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                **manifest_desc,
                "platform": {"architecture": "amd64", "os": "linux"},
                "annotations": {
                    "io.containerd.image.name": ref,
                    "org.opencontainers.image.ref.name": tag,
                },
            }
        ],
    }
    outer = Layer()
    outer.file("oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
    outer.file("index.json", json.dumps(index, sort_keys=True).encode())
    for digest, data in blobs.items():
        outer.file("blobs/sha256/" + digest.split(":", 1)[1], data)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_bytes(outer.tar())
    tmp.replace(out)
    return manifest_desc["digest"]


def leakwatch_image(args: argparse.Namespace) -> None:
    stage = dockerfile_final_stage(args.dockerfile)
    layer = Layer()
    for package in LIB_PACKAGES:
        add_package(layer, package)
    layer.file("etc/passwd", PASSWD.encode())
    layer.file("etc/group", GROUP.encode())
    layer.dir("root", 0o700)
    layer.dir("home/nonroot", 0o700, 65532, 65532)
    layer.dir("tmp", 0o1777)
    layer.file("usr/bin/leakwatch", args.binary.read_bytes(), 0o755)
    layer.file("etc/leakwatch/leakwatch.toml", args.config.read_bytes(), 0o644)
    config = {
        "User": stage["USER"],
        "Entrypoint": stage["ENTRYPOINT"],
        "Env": [PATH_ENV],
        "WorkingDir": "/home/nonroot",
    }
    if "CMD" in stage:
        config["Cmd"] = stage["CMD"]
    if "EXPOSE" in stage:
        config["ExposedPorts"] = {
            (p if "/" in p else p + "/tcp"): {} for p in stage["EXPOSE"]
        }
    digest = write_layout(args.out, args.ref, layer, config, f"packed from {args.dockerfile}")
    print(f"{args.ref} {digest} entrypoint={json.dumps(stage['ENTRYPOINT'])} cmd={json.dumps(stage.get('CMD'))}")


def pause_image(args: argparse.Namespace) -> None:
    layer = Layer()
    layer.file("pause", args.binary.read_bytes(), 0o755)
    config = {"User": "65535:65535", "Entrypoint": ["/pause"], "Env": [PATH_ENV]}
    digest = write_layout(args.out, args.ref, layer, config, "a static pause that reaps zombies")
    print(f"{args.ref} {digest}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="image", required=True)
    lw = sub.add_parser("leakwatch")
    lw.add_argument("--binary", type=Path, required=True)
    lw.add_argument("--dockerfile", type=Path, required=True)
    lw.add_argument("--config", type=Path, required=True)
    lw.add_argument("--ref", required=True)
    lw.add_argument("--out", type=Path, required=True)
    pause = sub.add_parser("pause")
    pause.add_argument("--binary", type=Path, required=True)
    pause.add_argument("--ref", required=True)
    pause.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    if args.image == "leakwatch":
        leakwatch_image(args)
    else:
        pause_image(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
