"""iptables shell: one `iptables-restore --noflush` transaction per family and change."""

from __future__ import annotations

import shutil
import subprocess

from cni import masq
from cni.errors import CNIError, INTERNAL

TOOLS = {4: ("iptables-save", "iptables-restore"), 6: ("ip6tables-save", "ip6tables-restore")}


def _tool(name: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/sbin:/usr/bin")
    if not found:
        raise CNIError(INTERNAL, f"{name} not found")
    return found


def restore(family: int, text: str) -> None:
    if not text:
        return
    proc = subprocess.run([_tool(TOOLS[family][1]), "--noflush", "-w", "5"], input=text.encode(),
                          capture_output=True)
    if proc.returncode != 0:
        raise CNIError(INTERNAL, f"{TOOLS[family][1]} failed", proc.stderr.decode(errors="replace").strip())


def save_nat(family: int) -> masq.NatState:
    proc = subprocess.run([_tool(TOOLS[family][0]), "-t", "nat"], capture_output=True)
    if proc.returncode != 0:
        # no nat table yet (or no ip6tables support): nothing of ours can exist
        return masq.NatState(frozenset(), (), ())
    return masq.parse_save(proc.stdout.decode(errors="replace"))


def teardown(family: int, chains: list[str]) -> None:
    state = save_nat(family)
    restore(family, masq.render_teardown(state, chains))


class Job:
    """Restore transactions started now (one process per family) and waited for later."""

    def __init__(self, texts: dict[int, str]) -> None:
        self.families = set(texts)
        self.procs: list[tuple[int, subprocess.Popen[bytes]]] = []
        for family, text in sorted(texts.items()):
            proc = subprocess.Popen([_tool(TOOLS[family][1]), "--noflush", "-w", "5"], stdin=subprocess.PIPE,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            assert proc.stdin is not None
            proc.stdin.write(text.encode())
            proc.stdin.close()
            self.procs.append((family, proc))

    def wait(self) -> None:
        errors = []
        for family, proc in self.procs:
            err = _finish(proc)
            if proc.returncode != 0:
                errors.append(f"{TOOLS[family][1]}: {err.decode(errors='replace').strip()}")
        self.procs.clear()
        if errors:
            raise CNIError(INTERNAL, "failed to install masquerade rules", "; ".join(errors))

    def wait_failed(self) -> set[int]:
        """Wait; the families whose transaction failed (nothing applied for them)."""
        failed = set()
        for family, proc in self.procs:
            _finish(proc)
            if proc.returncode != 0:
                failed.add(family)
        self.procs.clear()
        return failed

    def abandon(self) -> None:
        """Let the transactions finish (so a teardown after this sees them), ignore their errors."""
        for _, proc in self.procs:
            _finish(proc)
        self.procs.clear()


def _finish(proc: subprocess.Popen[bytes]) -> bytes:
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    proc.wait()
    return err
