"""Not a Hydra plugin: a module DVC imports, through Hydra's plugin scan, in the process that
composes params.yaml for ``dvc exp run -S …`` and then runs the stages. It saves params.yaml
as it is before DVC writes the experiment's, so that a failing stage can put it back
(``medsft.core.exp_guard``). Elsewhere (a Hydra sweep, ``stages.compose``) it does nothing."""

import sys

if "dvc.utils.hydra" in sys.modules:  # imported by DVC's compose_and_dump
    from dvc.repo import Repo

    from medsft.core.exp_guard import remember_params

    remember_params(Repo.find_root())
