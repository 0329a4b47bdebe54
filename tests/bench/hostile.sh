#!/usr/bin/env bash
# Benchmark (not a test) of builds on hostile layers: peak RSS, wall time and outcome of
# `osbuild build` (kernel+initrd and tar) on layers of nested directories 1,000, 2,000, 4,000
# and 10,000 deep (one-byte names: the last two pass PATH_MAX and are refused), and of
# kernel+initrd on a gzip layer expanding to 20 GiB (refused by --max-layer-size; the table
# then shows what the cache holds afterwards).
#
#   tests/bench/hostile.sh [OSBUILD_BINARY...]
#
# Each binary given runs every case (to compare one before and after a change); default: a
# debug build of this tree. The images are pushed to a docker-registry on loopback; the bomb
# layer is made once (about 20 MB, and a minute to hash what it expands to) and kept in
# $OSBUILD_BENCH_LAYERS (default target/hostile-layers). A binary without the bound writes the
# whole expansion into the cache (20 GiB of disk): it gets $BOMB_TIMEOUT seconds (default 900).
set -euo pipefail
cd "$(dirname "$0")/../.."
command -v /usr/bin/time >/dev/null || { echo "needs /usr/bin/time (apt-get install time)" >&2; exit 1; }
command -v docker-registry >/dev/null || { echo "needs docker-registry" >&2; exit 1; }
bins=("$@")
if [ ${#bins[@]} -eq 0 ]; then
  cargo build --locked -q --bin osbuild
  bins=("${CARGO_TARGET_DIR:-$PWD/target}/debug/osbuild")
fi
layers=${OSBUILD_BENCH_LAYERS:-$PWD/target/hostile-layers}
mkdir -p "$layers"
work=$(mktemp -d)
trap 'kill "$registry" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$work"' EXIT

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$work/registry.yml" <<EOF
version: 0.1
log: {level: error, accesslog: {disabled: true}}
storage: {filesystem: {rootdirectory: $work/registry}}
http: {addr: 127.0.0.1:$port}
EOF
docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry=$!
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$port/v2/" >/dev/null && break; sleep 0.1; done

# Make the layers (once) and push the images: bench/kernel:1 (a stand-in kernel and an empty
# kernel.tar), bench/deep:N, bench/bomb:1.
python3 - "$layers" "127.0.0.1:$port" <<'EOF'
import gzip, hashlib, io, json, os, platform, sys, tarfile, urllib.request, zlib

out, registry = sys.argv[1], sys.argv[2]
arch = {"x86_64": "amd64", "aarch64": "arm64", "s390x": "s390x"}[platform.machine()]

class Hashing:
    """Hashes what is written (the diff_id) and passes it on to a gzip file."""
    def __init__(self, path):
        self.sha = hashlib.sha256()
        self.gz = gzip.GzipFile(path, "wb", compresslevel=9, mtime=0)
    def write(self, b):
        self.sha.update(b)
        self.gz.write(b)
        return len(b)
    def close(self):
        self.gz.close()
        return "sha256:" + self.sha.hexdigest()

def layer(name, fill):
    """A gzip layer made by fill(tarfile) once; returns (path, diff_id)."""
    path = os.path.join(out, name + ".tar.gz")
    if not os.path.exists(path + ".diffid"):
        h = Hashing(path + ".tmp")
        with tarfile.open(fileobj=h, mode="w|", format=tarfile.PAX_FORMAT) as t:
            fill(t)
        diff_id = h.close()
        os.rename(path + ".tmp", path)
        open(path + ".diffid", "w").write(diff_id)
    return path, open(path + ".diffid").read()

def deep(n):
    def fill(t):
        p = ""
        for _ in range(n):
            p += "d/"
            i = tarfile.TarInfo(p.rstrip("/"))
            i.type, i.mode, i.mtime = tarfile.DIRTYPE, 0o755, 0
            t.addfile(i)
    return fill

def kernel(t):
    for name, body in [("kernel", b"\x00" * 4096), ("kernel.tar", b"\x00" * 1024)]:
        i = tarfile.TarInfo(name)
        i.size, i.mode, i.mtime = len(body), 0o644, 0
        t.addfile(i, io.BytesIO(body))

def bomb():
    """One 20 GiB file of zeros: gzip members for the header, twenty 1 GiB runs of zeros
    (one member compressed once and repeated) and the end of the archive."""
    path = os.path.join(out, "bomb.tar.gz")
    if os.path.exists(path + ".diffid"):
        return path, open(path + ".diffid").read()
    gib, runs = 1 << 30, 20
    info = tarfile.TarInfo("zeros")
    info.size, info.mode, info.mtime = runs * gib, 0o644, 0
    header = info.tobuf(format=tarfile.PAX_FORMAT)
    end = b"\x00" * 1024
    def member(data):
        c = zlib.compressobj(9, zlib.DEFLATED, 31)
        return c.compress(data) + c.flush()
    c = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b"\x00" * (64 << 20)
    zeros = b"".join(c.compress(chunk) for _ in range(gib // len(chunk))) + c.flush()
    sha = hashlib.sha256(header)
    for _ in range(runs * gib // len(chunk)):
        sha.update(chunk)
    sha.update(end)
    with open(path + ".tmp", "wb") as f:
        f.write(member(header))
        for _ in range(runs):
            f.write(zeros)
        f.write(member(end))
    os.rename(path + ".tmp", path)
    open(path + ".diffid", "w").write("sha256:" + sha.hexdigest())
    return path, open(path + ".diffid").read()

def push_blob(repo, data):
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    r = urllib.request.urlopen(urllib.request.Request(
        f"http://{registry}/v2/{repo}/blobs/uploads/", method="POST"))
    loc = r.headers["Location"]
    if loc.startswith("/"):
        loc = f"http://{registry}{loc}"
    sep = "&" if "?" in loc else "?"
    urllib.request.urlopen(urllib.request.Request(
        f"{loc}{sep}digest={digest}", data=data, method="PUT",
        headers={"Content-Type": "application/octet-stream"}))
    return digest

def push(repo, tag, layers):
    descs, diff_ids = [], []
    for path, diff_id in layers:
        data = open(path, "rb").read()
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                      "digest": push_blob(repo, data), "size": len(data)})
        diff_ids.append(diff_id)
    config = json.dumps({"architecture": arch, "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps({"schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                   "digest": push_blob(repo, config), "size": len(config)},
        "layers": descs}).encode()
    urllib.request.urlopen(urllib.request.Request(
        f"http://{registry}/v2/{repo}/manifests/{tag}", data=manifest, method="PUT",
        headers={"Content-Type": "application/vnd.oci.image.manifest.v1+json"}))

push("bench/kernel", "1", [layer("kernel", kernel)])
for n in (1000, 2000, 4000, 10000):
    push("bench/deep", str(n), [layer(f"deep-{n}", deep(n))])
path, _ = b = bomb()
push("bench/bomb", "1", [b])
sizes = {f: os.path.getsize(os.path.join(out, f)) for f in sorted(os.listdir(out)) if f.endswith(".gz")}
print("layers:", ", ".join(f"{f} {s / 1e6:.2f} MB" for f, s in sizes.items()), file=sys.stderr)
EOF

mirror="docker.io=http://127.0.0.1:$port"
printf '%-14s %-11s %-14s %4s %8s %9s  %s\n' binary case format exit wall_s peak_MiB "outcome (first line of stderr)"
run() { # binary label case image format [timeout]
  local bin=$1 label=$2 case=$3 image=$4 format=$5 limit=${6:-0}
  printf 'kernel:\n  image: bench/kernel:1\n  cmdline: "console=ttyS0"\ninit:\n  - %s\n' "$image" > "$work/$case.yml"
  rm -rf "$work/cache" "$work/out"
  local code=0
  local cmd=(/usr/bin/time -f "%e %M" -o "$work/time")
  [ "$limit" -gt 0 ] && cmd+=(timeout -s KILL "$limit")
  cmd+=("$bin" build -q --cache "$work/cache" --mirror "$mirror" --dir "$work/out" -f "$format" "$work/$case.yml")
  "${cmd[@]}" 2>"$work/err" >/dev/null || code=$?
  local wall=- rss=0
  [ -s "$work/time" ] && read -r wall rss < <(grep -E '^[0-9.]+ [0-9]+$' "$work/time" | tail -1)
  local msg
  msg=$({ grep -v '^Command' "$work/err" || true; } | head -1 | sed "s|$work/||g")
  [ ${#msg} -gt 130 ] && msg="...${msg: -127}"
  if [ "$limit" -gt 0 ] && { [ "$code" = 124 ] || [ "$code" = 137 ]; }; then msg="killed after ${limit}s"; fi
  printf '%-14s %-11s %-14s %4s %8s %9s  %s\n' "$label" "$case" "$format" "$code" "$wall" "$((rss / 1024))" "${msg:-ok}"
}
for bin in "${bins[@]}"; do
  label=$(basename "$bin")
  for n in 1000 2000 4000 10000; do
    for format in kernel+initrd tar; do
      run "$bin" "$label" "deep-$n" "bench/deep:$n" "$format"
    done
  done
  run "$bin" "$label" bomb bench/bomb:1 kernel+initrd "${BOMB_TIMEOUT:-900}"
  echo "  after the bomb: cache $(du -sh "$work/cache" 2>/dev/null | cut -f1), tmp/ $(find "$work/cache/tmp" -type f 2>/dev/null | wc -l) files, largest blob $(find "$work/cache/blobs" -type f -printf '%s\n' 2>/dev/null | sort -n | tail -1) bytes, --dir $(find "$work/out" -type f 2>/dev/null | wc -l) files"
  rm -rf "$work/cache" "$work/out"
done
