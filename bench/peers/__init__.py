"""One module per migration method that ``bench compare`` runs, plus the kernels and the peers' venv they share."""
