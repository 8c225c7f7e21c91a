"""The JSON records a run leaves on disk, as types.

- `records.model`: `model/config.json` (`ModelConfig`), `train_config.json`
  (`TrainConfigRecord`), `train_summary.json` (`TrainSummary`);
- `records.metrics`: `eval/<split>/metrics.json` (`SplitMetrics`), also each evaluated
  split's entry in `model/metrics.json`;
- `records.predictions`: what `bloodcell predict` writes besides each prediction: the model
  (`ModelSummary`), the output's head (`OutputMeta`), folder and run summaries (`FolderGroup`,
  `RunTotals`);
- `records.benchmark`: `benchmark.json` (`BenchmarkRecord`);
- `records.studies`: the audit (`AuditResult`), robustness (`RobustnessResult`), the
  out-of-scope folders (`OodResult`), the engine checks (`EngineRecords`), `model/metrics.json`
  whole (`ModelMetrics`) and cross-validation
  (`CvResult`, `ProtocolsResult`).

Readers name their keys through these types instead of passing `dict[str, Any]` around, so what a
file holds is written down once. They are TypedDicts, plain dicts at run time: nothing here
changes a byte on disk. Records that older models or an exported file's neighbour may lack are
`total=False`; readers use `.get` for those keys. Import them from here.
"""

from __future__ import annotations

from bloodcell.records.benchmark import BenchmarkRecord, InferenceFigures, RecipeResult
from bloodcell.records.metrics import (
    BootstrapRecord,
    CalibrationBin,
    ClassMetrics,
    ClinicalMetrics,
    EvalData,
    Figures,
    GroupBootstrapRecord,
    GroupIntervals,
    GroupMean,
    ImageIntervals,
    Interval,
    Metrics,
    RocAuc,
    ScopeMetrics,
    SetLevel,
    SetMetrics,
    SplitMetrics,
)
from bloodcell.records.model import (
    CalibrationRecord,
    CalibrationResult,
    CellGateRecord,
    ConformalRecord,
    DataRecord,
    DataStep,
    ModelConfig,
    OodRecord,
    OutlierRecord,
    TrainConfigRecord,
    TrainSeconds,
    TrainSummary,
)
from bloodcell.records.predictions import FolderGroup, ModelSummary, OutputMeta, RunTotals
from bloodcell.records.studies import (
    AuditResult,
    AuditSummary,
    AuditVariant,
    AuditVariants,
    ConditionScores,
    CorruptionInfo,
    CvData,
    CvFold,
    CvMetrics,
    CvResult,
    CvSeed,
    CvSettingsRecord,
    EngineCheck,
    EngineComparison,
    EngineOod,
    EngineRecords,
    ExportSummary,
    FolderResult,
    InScopeScores,
    Int8Accuracy,
    ModelMetrics,
    OodResult,
    OodSeparation,
    ProtocolBootstrap,
    ProtocolRow,
    ProtocolsResult,
    Quantization,
    RobustnessResult,
    RobustnessRow,
    RobustnessSummary,
    Spread,
    StudyData,
    SwapShares,
)

__all__ = [
    "BenchmarkRecord",
    "FolderGroup",
    "InferenceFigures",
    "ModelSummary",
    "OutputMeta",
    "RecipeResult",
    "RunTotals",
    "CalibrationResult",
    "AuditSummary",
    "TrainSeconds",
    "OodSeparation",
    "RobustnessSummary",
    "ConditionScores",
    "AuditResult",
    "AuditVariant",
    "AuditVariants",
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
    "CvSettingsRecord",
    "DataRecord",
    "DataStep",
    "EngineCheck",
    "EngineComparison",
    "EngineOod",
    "EngineRecords",
    "ExportSummary",
    "EvalData",
    "Figures",
    "FolderResult",
    "GroupBootstrapRecord",
    "GroupIntervals",
    "GroupMean",
    "ImageIntervals",
    "InScopeScores",
    "Int8Accuracy",
    "Interval",
    "Metrics",
    "ModelConfig",
    "ModelMetrics",
    "OodRecord",
    "OutlierRecord",
    "CellGateRecord",
    "OodResult",
    "ProtocolBootstrap",
    "ProtocolRow",
    "ProtocolsResult",
    "Quantization",
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
