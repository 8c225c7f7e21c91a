"""The JSON records a run leaves on disk, as types.

- `records.model_records`: `model/config.json` (`ModelConfig`), `train_config.json`
  (`TrainConfigRecord`), `train_summary.json` (`TrainSummary`);
- `records.metrics_records`: `model/metrics.json` (`ModelMetrics`, one `SplitMetrics` per
  evaluated split; `eval/<split>/metrics.json` is one `SplitMetrics`);
- `records.study_records`: the audit (`AuditResult`), robustness (`RobustnessResult`), the
  out-of-scope folders (`ScopeFoldersResult`), the engine checks (`EngineRecords`) and
  cross-validation (`CvResult`, `ProtocolsResult`).

Readers name their keys through these types instead of passing `dict[str, Any]` around, so what a
file holds is written down once. They are TypedDicts, plain dicts at run time: nothing here
changes a byte on disk. Records that older models or an exported file's neighbour may lack are
`total=False`; readers use `.get` for those keys. Import them from here.
"""

from __future__ import annotations

from bloodcell.records.metrics_records import (
    BootstrapRecord,
    CalibrationBin,
    ClassMetrics,
    ClinicalMetrics,
    EvalData,
    Figures,
    GroupBootstrapRecord,
    GroupIntervals,
    ImageIntervals,
    Interval,
    Metrics,
    ModelMetrics,
    RocAuc,
    ScopeMetrics,
    SetLevel,
    SetMetrics,
    SplitMetrics,
)
from bloodcell.records.model_records import (
    CalibrationRecord,
    CalibrationResult,
    CellGateRecord,
    ConformalRecord,
    DataRecord,
    ModelConfig,
    OutlierRecord,
    ScopeDetectorRecord,
    TrainConfigRecord,
    TrainSeconds,
    TrainSummary,
)
from bloodcell.records.study_records import (
    AuditResult,
    AuditSummary,
    AuditVariant,
    ConditionScores,
    CorruptionInfo,
    CvData,
    CvFold,
    CvMetrics,
    CvResult,
    CvSeed,
    EngineCheck,
    EngineComparison,
    EngineRecords,
    EngineScope,
    FolderResult,
    InScopeScores,
    ProtocolRow,
    ProtocolsResult,
    RobustnessResult,
    RobustnessRow,
    RobustnessSummary,
    ScopeFoldersResult,
    ScopeSeparation,
    Spread,
    StudyData,
    SwapShares,
)

__all__ = [
    "CalibrationResult",
    "AuditSummary",
    "TrainSeconds",
    "ScopeSeparation",
    "RobustnessSummary",
    "ConditionScores",
    "AuditResult",
    "AuditVariant",
    "BootstrapRecord",
    "CalibrationBin",
    "CalibrationRecord",
    "ClassMetrics",
    "ClinicalMetrics",
    "ConformalRecord",
    "CorruptionInfo",
    "CvData",
    "CvFold",
    "CvMetrics",
    "CvResult",
    "CvSeed",
    "DataRecord",
    "EngineCheck",
    "EngineComparison",
    "EngineScope",
    "EngineRecords",
    "EvalData",
    "Figures",
    "FolderResult",
    "GroupBootstrapRecord",
    "GroupIntervals",
    "ImageIntervals",
    "InScopeScores",
    "Interval",
    "Metrics",
    "ModelConfig",
    "ModelMetrics",
    "ScopeDetectorRecord",
    "OutlierRecord",
    "CellGateRecord",
    "ScopeFoldersResult",
    "ProtocolRow",
    "ProtocolsResult",
    "RobustnessResult",
    "RobustnessRow",
    "RocAuc",
    "ScopeMetrics",
    "SetLevel",
    "SetMetrics",
    "SplitMetrics",
    "Spread",
    "StudyData",
    "SwapShares",
    "TrainConfigRecord",
    "TrainSummary",
]
