#!/usr/bin/env python3
"""hack/critest-registry.py ROOTFS.tar NNP_BINARY PORT READY_FILE

The images critest (cri-tools v1.32.0) pulls, built offline and served by a
read-only OCI distribution endpoint on 127.0.0.1:PORT, for the private
containerd of hack/critest.sh, whose registry mirrors for registry.k8s.io and
gcr.io point here. critest always calls PullImage, and containerd's CRI
PullImage always asks a registry, so importing images is not enough.

Every image is the busybox rootfs (hack/docker-image.sh's tar) plus one small
layer of its own (a file naming the image, so different names have different
digests, and what the image's test needs: /etc/passwd entries, an httpd
document root, the setuid program of the no_new_privs test, pgrep and ipcs
scripts busybox-static lacks). Layers are uncompressed tars
(application/vnd.oci.image.layer.v1.tar). Blobs are served by digest under
any repository name. Writes READY_FILE once it listens; runs until killed.
Only 127.0.0.1 is bound.
"""

import hashlib
import http.server
import io
import json
import sys
import tarfile

BUSYBOX_CMD = ["sh"]
PATH_ENV = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

# pgrep NAME: pids whose comm is NAME (busybox-static has no pgrep).
PGREP = """#!/bin/sh
found=1
for d in /proc/[0-9]*; do
    read -r c <"$d/comm" 2>/dev/null || continue
    if [ "$c" = "$1" ]; then echo "${d#/proc/}"; found=0; fi
done
exit $found
"""
# ipcs -m: the shared memory segments of this IPC namespace.
IPCS = """#!/bin/sh
cat /proc/sysvipc/shm
"""
# The sandbox ("pause") process: sleeps until told to stop.
PAUSE_CMD = ["/bin/sh", "-c", 'trap "exit 0" TERM INT; while :; do sleep 3600 & wait $!; done']
PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    "www-data:x:33:33:www-data:/var/www:/bin/false\n"
    "default-user:x:1000:1000:default-user:/home/default-user:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
GROUP = (
    "root:x:0:\n"
    "www-data:x:33:\n"
    "users:x:100:\n"
    "default-user:x:1000:\n"
    "group-defined-in-image:x:50000:default-user\n"
    "nogroup:x:65534:\n"
)


def sha(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def layer(files):
    """An uncompressed tar of (path, mode, bytes) entries, root-owned."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as t:
        dirs = set()
        for path, _mode, _data in files:
            parts = path.split("/")[:-1]
            for i in range(1, len(parts) + 1):
                dirs.add("/".join(parts[:i]))
        for d in sorted(dirs):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o755
            t.addfile(info)
        for path, mode, data in files:
            info = tarfile.TarInfo(path)
            if mode is None:  # a symlink to data
                info.type = tarfile.SYMTYPE
                info.linkname = data.decode()
                t.addfile(info)
                continue
            info.mode = mode
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def hardlinked_applets(rootfs_tar):
    """The rootfs tar with busybox's applet symlinks turned into hard links,
    as in the real busybox image: critest masks /bin/ls and expects only ls
    to stop working (a bind over a symlink would mask busybox itself)."""
    src = tarfile.open(rootfs_tar)
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as out:
        links = []
        for m in src.getmembers():
            if m.issym() and m.linkname.rsplit("/", 1)[-1] == "busybox":
                m.type = tarfile.LNKTYPE
                m.linkname = "./bin/busybox"
                links.append(m)  # after their target
            else:
                out.addfile(m, src.extractfile(m) if m.isfile() else None)
        for m in links:
            out.addfile(m)
    return buf.getvalue()


def main():
    rootfs_tar, nnp_binary, port, ready_file = sys.argv[1:5]
    blobs = {}
    manifests = {}  # "repo:tag" -> manifest bytes

    def blob(data):
        d = sha(data)
        blobs[d] = data
        return d

    base = hardlinked_applets(rootfs_tar)
    base_digest = blob(base)
    nnp = open(nnp_binary, "rb").read()

    def image(ref, cmd=BUSYBOX_CMD, user="", extra=(), workdir=""):
        files = [
            ("etc/critest-image", 0o644, ref.encode() + b"\n"),
            ("etc/passwd", 0o644, PASSWD.encode()),
            ("etc/group", 0o644, GROUP.encode()),
            ("usr/bin/pgrep", 0o755, PGREP.encode()),
            ("usr/bin/ipcs", 0o755, IPCS.encode()),
            ("var/run", None, b"/run"),
        ] + list(extra)
        top = layer(files)
        top_digest = blob(top)
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {"Cmd": cmd, "Env": [PATH_ENV], "User": user, "WorkingDir": workdir},
            "rootfs": {"type": "layers", "diff_ids": [base_digest, top_digest]},
        }
        cfg = json.dumps(config, sort_keys=True).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": blob(cfg),
                "size": len(cfg),
            },
            "layers": [
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": base_digest, "size": len(base)},
                {"mediaType": "application/vnd.oci.image.layer.v1.tar", "digest": top_digest, "size": len(top)},
            ],
        }
        data = json.dumps(manifest, sort_keys=True).encode()
        blob(data)
        manifests[ref] = data

    def httpd(port_no, banner, index):
        # pid 1 stays a shell whose command line says "master process" and
        # which writes /var/run/nginx.pid, as nginx's master does (critest's
        # pid namespace tests look for both).
        script = (
            f"echo {banner}; echo $$ >/var/run/nginx.pid; httpd -f -v -p {port_no} -h /www & "
            'trap "kill $!; exit 0" TERM INT; wait'
        )
        cmd = ["/bin/sh", "-c", script, "nginx: master process"]
        return dict(cmd=cmd, extra=[("www/index.html", 0o644, index)])

    k8s = "e2e-test-images/"
    cri = "k8s-staging-cri-tools/"
    image("pause:3.9", cmd=PAUSE_CMD)
    image(k8s + "busybox:1.29-2")
    image(k8s + "nginx:1.14-2", **httpd(80, "nginx", b"<title>Welcome to nginx!</title>\n"))
    image(k8s + "httpd:2.4.39-4", **httpd(80, "httpd", b"<html><body><h1>It works!</h1></body></html>\n"))
    image(cri + "hostnet-nginx-amd64", **httpd(12003, "nginx", b"<title>Welcome to nginx!</title>\n"))
    image(k8s + "nonewprivs:1.3", cmd=["/usr/local/bin/nnp"], extra=[("usr/local/bin/nnp", 0o4755, nnp)])
    image(cri + "test-image-predefined-group", user="1000")
    image(cri + "test-image-user-uid", user="1002")
    image(cri + "test-image-user-username", user="www-data")
    image(cri + "test-image-user-uid-group", user="1003:users")
    image(cri + "test-image-user-username-group", user="www-data:users")
    image(cri + "test-image-latest:latest")
    image(cri + "test-image-tag:test")
    image(cri + "test-image-tag:all")
    for i in (1, 2, 3):
        image(cri + f"test-image-{i}:latest")
    # Different tags of one image: the same manifest under three tags.
    image(cri + "test-image-tags:1")
    for i in (2, 3):
        manifests[cri + f"test-image-tags:{i}"] = manifests[cri + "test-image-tags:1"]

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, fmt, *args):
            sys.stderr.write("critest-registry: " + (fmt % args) + "\n")

        def answer(self, body, ctype, digest=None):
            if body is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            if digest:
                self.send_header("Docker-Content-Digest", digest)
            self.end_headers()
            if self.command == "GET":
                self.wfile.write(body)

        def do_GET(self):
            path = self.path.split("?")[0]
            if path in ("/v2", "/v2/"):
                return self.answer(b"{}", "application/json")
            if not path.startswith("/v2/"):
                return self.answer(None, "")
            rest = path[len("/v2/"):]
            if "/manifests/" in rest:
                repo, ref = rest.rsplit("/manifests/", 1)
                data = blobs.get(ref) if ref.startswith("sha256:") else manifests.get(f"{repo}:{ref}")
                if data is None and ":" not in repo and not ref.startswith("sha256:"):
                    data = manifests.get(f"{repo}:{ref}")
                if data is None and ref == "latest":
                    data = manifests.get(repo)
                mt = "application/vnd.oci.image.manifest.v1+json"
                return self.answer(data, mt, sha(data) if data else None)
            if "/blobs/" in rest:
                _repo, digest = rest.rsplit("/blobs/", 1)
                data = blobs.get(digest)
                return self.answer(data, "application/octet-stream", digest if data else None)
            return self.answer(None, "")

        do_HEAD = do_GET

    server = http.server.ThreadingHTTPServer(("127.0.0.1", int(port)), Handler)
    with open(ready_file, "w") as f:
        f.write(f"{len(manifests)} images\n")
    server.serve_forever()


if __name__ == "__main__":
    main()
