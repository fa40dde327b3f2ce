"""Data: sources and samples (``core``), scenarios and their builders by kind (``registry``),
the DataModule and transforms, and three families of datasets: the embedded Fashion scenes
(``fashion``), the paper protocols (``paper``) and your own folders (``folders``)."""

from incremental.data.core import (
    ArraySource,
    DatasetError,
    Problem,
    SampleDataset,
    SegmentationSource,
    read_image,
    read_mask,
)
from incremental.data.registry import SCENARIO_KINDS, build_scenario, build_scenarios
from incremental.data.scenario import Scenario, as_sources

__all__ = [
    "SCENARIO_KINDS",
    "ArraySource",
    "DatasetError",
    "Problem",
    "SampleDataset",
    "Scenario",
    "SegmentationSource",
    "as_sources",
    "build_scenario",
    "build_scenarios",
    "read_image",
    "read_mask",
]
