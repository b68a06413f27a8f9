"""A toy notebook for the runner's tests: parameters, a check cell, one verdict."""

import nbformat


def write_notebook(path, code_cells):
    cells = [nbformat.v4.new_code_cell(src) for src in code_cells]
    cells[0].metadata["tags"] = ["parameters"]
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)
    return path


PARAMS = 'preset = "quick"\nout_dir = "out"\nlr = 0.1'


VALIDATE = 'if not lr > 0:\n    raise ValueError(f"lr must be > 0, got {lr}")'


VERDICT = (
    "from bnlib.lab.machine import machine_info\n"
    "from bnlib.verdicts import Claim, Results, exact\n"
    "r = Results(out_dir, machine=machine_info())\n"
    "r.verdict(Claim('lr is positive', 'toy', predicts='higher', min_effect=0), exact(lr, label='lr'), note=f'lr = {lr}')\n"
    "r.save()"
)
