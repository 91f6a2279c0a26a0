"""Packaging as users get it: a wheel built from the checkout (hatchling and hatch-jupyter-builder,
pyproject.toml) carries the prebuilt JupyterLab extension and the kernelspec; installed into a
fresh venv on a PATH without node or npm, JupyterLab lists the extension enabled and OK and the
kernel answers a cell. The sdist builds the same wheel; a checkout that cannot build the extension
says so in one line; the kernelspec is readable by every user; the version is the same everywhere."""

import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
from jupyter_client import KernelManager
from jupyter_client.kernelspec import KernelSpecManager

ROOT = Path(__file__).resolve().parent.parent
EXTENSION = "sandbox-kernel-indicator"
VERSION = json.loads((ROOT / "jupyter_extension" / "package.json").read_text())["version"]
NO_NODE = ("node", "nodejs", "npm", "npx", "corepack")

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def no_node_path(tmp_path_factory):
    """This PATH, every command of it linked into one directory, node and npm left out."""
    bin_dir = tmp_path_factory.mktemp("no-node-bin")
    for d in os.environ["PATH"].split(os.pathsep):
        if not os.path.isdir(d) or d.startswith(sys.prefix):
            continue
        for name in os.listdir(d):
            if name not in NO_NODE and not (bin_dir / name).exists() and os.access(os.path.join(d, name), os.X_OK):
                (bin_dir / name).symlink_to(os.path.join(d, name))
    path = str(bin_dir)
    assert shutil.which("bash", path=path) and not any(shutil.which(n, path=path) for n in NO_NODE)
    return path


def _run(command, path, **kwargs):
    env = {**os.environ, "PATH": path, **kwargs.pop("env", {})}
    return subprocess.run(command, env=env, capture_output=True, text=True, **kwargs)


def _build(args, path, cwd=ROOT):
    """`python -m build` with this venv's hatchling (no build isolation: no downloads)."""
    out = cwd / "out"
    r = _run([sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), *args], path, cwd=cwd)
    assert r.returncode == 0, r.stdout + r.stderr
    return out


@pytest.fixture(scope="module")
def dists(tmp_path_factory, no_node_path):
    """The sdist and the wheel of the checkout (the extension prebuilt by `make venv`), and the
    wheel built from the sdist without node."""
    work = tmp_path_factory.mktemp("dist")
    shutil.copytree(ROOT, work / "src", ignore=shutil.ignore_patterns(".venv", "node_modules", ".git", "dist", "out"))
    out = _build(["--sdist", "--wheel"], os.environ["PATH"], cwd=work / "src")
    sdist, = out.glob("*.tar.gz")
    wheel, = out.glob("*.whl")
    with tarfile.open(sdist) as t:
        t.extractall(work, filter="data")
    from_sdist, = _build(["--wheel"], no_node_path, cwd=work / sdist.name.removesuffix(".tar.gz")).glob("*.whl")
    return sdist, wheel, from_sdist


@pytest.fixture(scope="module")
def venv(tmp_path_factory, dists, no_node_path):
    """A fresh venv with the wheel and JupyterLab, installed on a PATH without node or npm."""
    _, wheel, _ = dists
    root = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(root)], check=True)
    path = f"{root}/bin{os.pathsep}{no_node_path}"
    r = _run([f"{root}/bin/pip", "install", "-q", str(wheel), "jupyterlab>=4,<5"], path)
    assert r.returncode == 0, r.stderr
    return root, path


def _record(wheel):
    with zipfile.ZipFile(wheel) as z:
        record, = (n for n in z.namelist() if n.endswith(".dist-info/RECORD"))
        return sorted(z.read(record).decode().splitlines())


def test_the_wheel_carries_the_prebuilt_extension_and_the_kernelspec(dists):
    _, wheel, _ = dists
    names = zipfile.ZipFile(wheel).namelist()
    data = f"sandbox_kernel-{VERSION}.data/data/share/jupyter/labextensions/{EXTENSION}"
    assert {f"{data}/package.json", f"{data}/install.json", f"{data}/static/style.js"} <= set(names)
    assert any(n.startswith(f"{data}/static/remoteEntry.") for n in names)
    assert {"sandbox_kernel/kernelspec/kernel.json", "sandbox_kernel/session.bash"} <= set(names)


def test_the_sdist_has_the_extension_sources_and_builds_the_same_wheel_without_node(dists):
    sdist, wheel, from_sdist = dists
    base = sdist.name.removesuffix(".tar.gz")
    names = set(tarfile.open(sdist).getnames())
    for f in ("package.json", "package-lock.json", "tsconfig.json", "build_labextension.py", "src/index.ts", "style/index.css"):
        assert f"{base}/jupyter_extension/{f}" in names, f
    assert not any("node_modules" in n for n in names)
    # Every file of the two wheels, with its hash.
    assert _record(from_sdist) == _record(wheel)


def test_the_version_is_the_one_of_package_json_everywhere(dists):
    _, wheel, _ = dists
    assert wheel.name == f"sandbox_kernel-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(wheel) as z:
        built = json.loads(z.read(f"sandbox_kernel-{VERSION}.data/data/share/jupyter/labextensions/{EXTENSION}/package.json"))
        metadata = z.read(f"sandbox_kernel-{VERSION}.dist-info/METADATA").decode()
    assert built["version"] == VERSION and f"\nVersion: {VERSION}\n" in metadata


def test_a_checkout_without_node_says_in_one_line_that_the_extension_was_not_built(tmp_path, no_node_path):
    # A fresh checkout: the tracked files only, no prebuilt extension.
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout
    for name in filter(None, files.decode().split("\0")):
        if (ROOT / name).exists():
            (tmp_path / "src" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(ROOT / name, tmp_path / "src" / name)
    r = _run([sys.executable, "-m", "pip", "install", "--no-build-isolation", "--no-deps", "--target", str(tmp_path / "t"),
              str(tmp_path / "src")], no_node_path)
    assert r.returncode != 0
    said = [line.strip() for line in (r.stdout + r.stderr).splitlines() if "sandbox-kernel:" in line]
    assert said == ["sandbox-kernel: the JupyterLab extension was not built: node and npm are not on PATH. Install them "
                    "(Debian: apt-get install nodejs npm) and retry, or install a wheel built by `make dist`; "
                    "SKIP_JUPYTER_BUILDER=1 installs the kernel without the extension."], r.stdout + r.stderr
    assert not (tmp_path / "t").exists()


def test_jupyterlab_lists_the_extension_enabled_and_ok_from_the_installed_wheel(venv, tmp_path):
    root, path = venv
    r = _run([f"{root}/bin/jupyter", "labextension", "list"], path,
             env={"HOME": str(tmp_path), "JUPYTER_CONFIG_DIR": str(tmp_path / "config"), "JUPYTER_DATA_DIR": str(tmp_path / "data")})
    assert r.returncode == 0, r.stderr
    lines = [line.split() for line in (r.stdout + r.stderr).replace("\x1b[32m", "").replace("\x1b[0m", "").splitlines()]
    assert [EXTENSION, f"v{VERSION}", "enabled", "OK", "(python,", "sandbox-kernel)"] in lines, r.stdout + r.stderr
    assert [f"{root}/share/jupyter/labextensions"] in lines


def _modes(top):
    found = {}
    for d, dirs, files in os.walk(top):
        for name in [*dirs, *files]:
            found[os.path.relpath(os.path.join(d, name), top)] = stat.S_IMODE(os.lstat(os.path.join(d, name)).st_mode)
    return found


@pytest.mark.parametrize("where", ["--prefix", "--sys-prefix", "--user"])
def test_the_kernelspec_is_readable_by_every_user_and_listed(venv, tmp_path, where):
    root, path = venv
    home = tmp_path / "home"
    home.mkdir()
    args = {"--prefix": ["--prefix", str(tmp_path / "p")], "--sys-prefix": ["--sys-prefix"], "--user": ["--user"]}[where]
    top = {"--prefix": tmp_path / "p", "--sys-prefix": root, "--user": home / ".local"}[where] / "share" / "jupyter"
    shutil.rmtree(top / "kernels", ignore_errors=True)
    env = {"HOME": str(home)}
    # A strict umask, as with sudo on a hardened host: the kernelspec must still be readable by all.
    r = _run([f"{root}/bin/python", "-m", "sandbox_kernel", "install", *args], path, env=env, umask=0o077)
    assert r.returncode == 0, r.stderr
    modes = _modes(top / "kernels")
    assert modes == {"sandbox": 0o755, "sandbox/kernel.json": 0o644, "sandbox/logo-32x32.png": 0o644,
                     "sandbox/logo-64x64.png": 0o644, "sandbox/logo-svg.svg": 0o644}
    assert stat.S_IMODE(os.stat(top / "kernels").st_mode) == 0o755
    listed = _run([f"{root}/bin/jupyter", "kernelspec", "list", "--json"], path, env={**env, "JUPYTER_PATH": str(top)})
    assert json.loads(listed.stdout)["kernelspecs"]["sandbox"]["resource_dir"] == str(top / "kernels" / "sandbox")


def test_the_kernel_of_the_installed_wheel_answers_a_cell_and_names_its_version(venv, tmp_path):
    root, path = venv
    r = _run([f"{root}/bin/python", "-m", "sandbox_kernel", "install", "--sys-prefix"], path)
    assert r.returncode == 0, r.stderr
    ksm = KernelSpecManager(kernel_dirs=[str(root / "share" / "jupyter" / "kernels")])
    assert ksm.get_kernel_spec("sandbox").argv[0] == f"{root}/bin/python"
    km = KernelManager(kernel_name="sandbox", kernel_spec_manager=ksm)
    km.start_kernel(cwd=str(tmp_path), env={**os.environ, "PATH": path})
    kc = km.client()
    kc.start_channels()
    try:
        kc.wait_for_ready(timeout=60)
        out = []
        reply = kc.execute_interactive("echo $((6 * 7))", timeout=60,
                                       output_hook=lambda m: out.append(m["content"].get("text", "")))
        assert reply["content"]["status"] == "ok" and "".join(out).endswith("42\n")
        kc.kernel_info()
        info = kc.get_shell_msg(timeout=30)["content"]
        assert info["implementation"] == "sandbox_kernel" and info["implementation_version"] == VERSION
    finally:
        kc.stop_channels()
        km.shutdown_kernel(now=True)
