"""Device libraries from micropython-lib, fetched from PyPI by name, pinned and hash-checked.

    python tools/devlibs.py          fetch (once) and print where the sources are

Pinned: umqtt.simple (micropython-lib) and microdot (the web server; a
normal PyPI package, taken the same way so the device and the host tests run
the very same files).

micropython-lib's packages on PyPI (e.g. `micropython-umqtt.simple`) are
sdists without setup.py: pip refuses to download or install them as Python
projects. Its package finder still lists their files, so this asks it for
the pinned version's sdist URL (same indexes and settings as every pip call
on this machine), downloads it through pip's own session, checks its SHA-256
against the pin below and unpacks the listed modules into build/lib/. The
sdist is kept in build/downloads/: fetched once, checked on every use.

build/lib/ holds their source: tools/build.py compiles it to .mpy next to the
package in build/device, manifest.py freezes it, and the CPython host tests
import it from there. None of their code is kept in this repository.
"""

import hashlib
import os
import sys
import tarfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOWNLOADS = os.path.join(ROOT, "build", "downloads")
LIB = os.path.join(ROOT, "build", "lib")

# (PyPI name, version, sha256 of the sdist, modules taken from it: a path in
# the sdist, or (path in the sdist, module path) when they differ). 1.3.4 is
# the newest micropython-umqtt.simple on PyPI (micropython-lib's later
# releases are on its own index only). net/mqtt.py relies on its internals.
PINNED = (
    (
        "micropython-umqtt.simple",
        "1.3.4",
        "b6a2520239e3992c63a7de9370ee9b3d9d27819a90359c521f1c0f7ccab8d12f",
        ("umqtt/simple.py",),
    ),
    # The web server of net/web.py (the web interface). Only its core: the
    # package's extensions (sessions, SSE, websockets, ...) are not used.
    (
        "microdot",
        "2.7.0",
        "e11f39f0f5564bb5db69f728902740ed592d632ae7a03e24ca3a88cd59ad2f53",
        (("src/microdot/__init__.py", "microdot/__init__.py"), ("src/microdot/microdot.py", "microdot/microdot.py")),
    ),
)


class FetchError(Exception):
    """A pinned library could not be fetched or failed its hash check (args[0]: why)."""


def _sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        digest.update(handle.read())
    return digest.hexdigest()


def _download(name, version, target):
    # pip's internals (stable from pip 20 to 25): the finder of `pip download`
    # with its configured indexes, and the authenticated session.
    try:
        from pip._internal.commands import create_command
    except ImportError as error:
        raise FetchError("pip is needed to fetch %s %s: %r" % (name, version, error))
    command = create_command("download")
    options, _ = command.parse_args(["--no-deps", "--no-binary", ":all:", "%s==%s" % (name, version)])
    with command.main_context():
        session = command.get_default_session(options)
        finder = command._build_package_finder(options=options, session=session)
        links = [c.link for c in finder.find_all_candidates(name) if str(c.version) == version]
        links = [link for link in links if link.filename.endswith((".tar.gz", ".zip"))]
        if not links:
            raise FetchError("%s %s: no sdist found by pip's package finder" % (name, version))
        response = session.get(links[0].url_without_fragment)
        response.raise_for_status()
        partial = target + ".part"
        with open(partial, "wb") as handle:
            handle.write(response.content)
        os.replace(partial, target)


def ensure(quiet=False):
    """Fetch (once) and unpack every pinned library; return build/lib (raises FetchError)."""
    os.makedirs(DOWNLOADS, exist_ok=True)
    for name, version, sha256, modules in PINNED:
        archive = os.path.join(DOWNLOADS, "%s-%s.tar.gz" % (name, version))
        if not os.path.exists(archive) or _sha256(archive) != sha256:
            if not quiet:
                print("devlibs: fetching %s %s from PyPI (pinned)" % (name, version), flush=True)
            _download(name, version, archive)
            got = _sha256(archive)
            if got != sha256:
                os.rename(archive, archive + ".rejected")
                raise FetchError("%s %s: sha256 %s, pinned %s (kept as .rejected)" % (name, version, got, sha256))
        top = "%s-%s/" % (name, version)
        with tarfile.open(archive) as tar:
            for module in modules:
                member, module = _paths(module)
                data = tar.extractfile(top + member).read()
                path = os.path.join(LIB, module)
                if os.path.exists(path) and open(path, "rb").read() == data:
                    continue
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path + ".tmp", "wb") as handle:
                    handle.write(data)
                os.replace(path + ".tmp", path)
    return LIB


def _paths(module):
    # (path in the sdist, module path under build/lib)
    return module if isinstance(module, tuple) else (module, module)


def sources():
    """Paths of the unpacked library modules (after ensure())."""
    return [os.path.join(LIB, _paths(module)[1]) for _, _, _, modules in PINNED for module in modules]


if __name__ == "__main__":
    try:
        print(ensure())
    except FetchError as why:
        sys.exit("devlibs: %s" % why.args[0])
