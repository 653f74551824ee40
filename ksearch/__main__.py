"""`python -m ksearch task=<name> ...`: run (or resume) a search; Hydra overrides, -m sweeps."""

import hydra
from omegaconf import DictConfig


@hydra.main(version_base="1.3", config_path="../conf", config_name="config")
def main(cfg: DictConfig) -> None:
    from ksearch.app import search

    search(cfg)


if __name__ == "__main__":
    main()
