"""Transfer kinds: each a folder with its protocol (`transfer.py`), builders and phases.

A fourth kind (clone, snapshot, a populator) is a new folder registered in
`controller.app`; the reconciler, the executor and the status function stay as they are.
"""
