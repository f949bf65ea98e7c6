"""`make demo`: run examples/demo.ipynb in kernel A, checkpoint, restore in a fresh kernel B, compare.

Both kernels are real IPython kernels started through jupyter_client; they share only the checkpoint
folder. The notebook's cells tagged `after_restore` are run in both kernels at the end and their
output compared.
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

from nbmigrate.notebooks import code_cells, run_cells, split
from nbmigrate.remote import Kernel

NOTEBOOK = Path(__file__).with_name("demo.ipynb")
QUIET = ["--IPKernelApp.log_level=ERROR"]  # the kernels' own start-up warnings are not the demo's story


def main() -> int:
    main_cells, tail = split(code_cells(NOTEBOOK))
    with tempfile.TemporaryDirectory(prefix="nbmigrate-demo-") as work:
        ckpt = str(Path(work) / "checkpoint")
        print(f"kernel A: running {len(main_cells)} cells of {NOTEBOOK.name} with nbmigrate loaded")
        with Kernel.start(cwd=work, extra_arguments=QUIET) as a:
            a.execute("%load_ext nbmigrate")
            t = time.perf_counter()
            run_cells(a, main_cells)
            print(f"kernel A: cells took {time.perf_counter() - t:.1f} s")
            print("kernel A: %checkpoint -v")
            print(indent(a.execute(f"%checkpoint -v {ckpt}").stdout))
            with Kernel.start(cwd=work, extra_arguments=QUIET) as b:
                print("kernel B (fresh process): %restore -v")
                print(indent(b.execute(f"%load_ext nbmigrate\n%restore -v {ckpt}").stdout))
                before = "".join(r.text for r in run_cells(a, tail))
                after = "".join(r.text for r in run_cells(b, tail))
        print("after_restore cells in kernel A:\n" + indent(before))
        print("after_restore cells in kernel B:\n" + indent(after))
        same = before == after
        print("identical: yes" if same else "identical: NO")
        return 0 if same else 1


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.rstrip("\n").splitlines())


if __name__ == "__main__":
    sys.exit(main())
