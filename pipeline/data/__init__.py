"""Data preparation: label sets, datalist builders, patient-level splits and the leakage check.

The repeat-factor sampler lives in :mod:`pipeline.data.sampling` and is not imported here, so preparing a datalist
does not pay for importing torch.
"""

from pipeline.data.datalist import (
    build_chexpert_datalist,
    build_csv_datalist,
    build_cxr_lt_datalist,
    build_nih_datalist,
    count_table,
    label_matrix,
    load_datalist,
    write_datalist,
)
from pipeline.data.labels import LabelSet, available_label_sets, compute_groups, find_config_dir, load_label_set
from pipeline.data.splits import (
    SPLITS,
    PatientLeakageError,
    check_datalist_leakage,
    check_patient_leakage,
    find_patient_leakage,
    patient_split,
)

__all__ = [
    "SPLITS",
    "LabelSet",
    "PatientLeakageError",
    "available_label_sets",
    "build_chexpert_datalist",
    "build_csv_datalist",
    "build_cxr_lt_datalist",
    "build_nih_datalist",
    "check_datalist_leakage",
    "check_patient_leakage",
    "compute_groups",
    "count_table",
    "find_config_dir",
    "find_patient_leakage",
    "label_matrix",
    "load_datalist",
    "load_label_set",
    "patient_split",
    "write_datalist",
]
