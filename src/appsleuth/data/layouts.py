"""Column layouts of the SherLock files appsleuth recognises.

The names and orders here are facts about the real data (see the project's
reference notes); every other module takes them from here.
"""

from __future__ import annotations

from typing import Literal

__all__ = [
    "APPS_18",
    "APP_COUNTS_18",
    "CATEGORICAL_FEATURES",
    "ID_COLUMNS",
    "INCOMPLETE_ROW_COLUMNS",
    "LABEL_COLUMN",
    "MALWARE_APP",
    "RAW_COLUMNS",
    "SHERLOCK18_COLUMNS",
    "SHERLOCK18_FEATURES",
    "SHERLOCK18_INT_FEATURES",
    "STATE_VALUES",
    "Layout",
]

Layout = Literal["sherlock18", "raw", "teaching", "generic"]

LABEL_COLUMN = "ApplicationName"
MALWARE_APP = "Moriarty"

# Feature columns of sherlock_18apps.csv, in file order (after the index column and the label).
SHERLOCK18_FEATURES: tuple[str, ...] = (
    "CPU_USAGE",
    "UidRxBytes",
    "UidRxPackets",
    "UidTxBytes",
    "UidTxPackets",
    "cutime",
    "guest_time",
    "importance",
    "lru",
    "num_threads",
    "otherPrivateDirty",
    "priority",
    "rss",
    "state",
    "stime",
    "utime",
    "vsize",
    "cminflt",
)
SHERLOCK18_COLUMNS: tuple[str, ...] = (LABEL_COLUMN, *SHERLOCK18_FEATURES)

# Integer-typed columns of the 18-app file; the other numeric features are floats.
SHERLOCK18_INT_FEATURES: frozenset[str] = frozenset(
    {
        "UidRxBytes",
        "UidRxPackets",
        "UidTxBytes",
        "UidTxPackets",
        "importance",
        "lru",
        "otherPrivateDirty",
    }
)

CATEGORICAL_FEATURES: tuple[str, ...] = ("state",)
STATE_VALUES: tuple[str, ...] = ("S", "R", "D", "Z")

# The 52 incomplete rows of the real file miss exactly these columns together.
INCOMPLETE_ROW_COLUMNS: tuple[str, ...] = (
    "CPU_USAGE",
    "cutime",
    "guest_time",
    "num_threads",
    "priority",
    "rss",
    "state",
    "stime",
    "utime",
    "vsize",
)

# Row counts of the 18 apps in the real sherlock_18apps.csv (273,129 rows in all).
APP_COUNTS_18: dict[str, int] = {
    "Google App": 60001,
    "Chrome": 28046,
    "Facebook": 20103,
    "Geo News": 19991,
    "Messenger": 19989,
    "WhatsApp": 19985,
    "Photos": 17382,
    "ES File Explorer": 16667,
    "Gmail": 16417,
    "Calendar": 8996,
    "Moovit": 8365,
    "Waze": 8237,
    "Hangouts": 7608,
    "YouTube": 5173,
    "Maps": 5159,
    "Skype": 4877,
    "Moriarty": 3616,
    "Messages": 2517,
}
APPS_18: tuple[str, ...] = tuple(APP_COUNTS_18)

# The raw SherLock "Applications" table, 58 columns in file order.
RAW_COLUMNS: tuple[str, ...] = (
    "UserId", "UUID", "ApplicationName", "CPU_USAGE", "PackageName", "PackageUID",
    "UidRxBytes", "UidRxPackets", "UidTxBytes", "UidTxPackets", "cguest_time", "cmaj_flt",
    "cstime", "cutime", "dalvikPrivateDirty", "dalvikPss", "dalvikSharedDirty", "guest_time",
    "importance", "importanceReasonCode", "importanceReasonPid", "lru", "nativePrivateDirty",
    "nativePss", "nativeSharedDirty", "num_threads", "otherPrivateDirty", "otherPss",
    "otherSharedDirty", "pgid", "pid", "ppid", "priority", "rss", "rsslim", "sid",
    "start_time", "state", "stime", "tcomm", "utime", "vsize", "Version_Code", "Version_Name",
    "sherlock_version", "tgpid", "flags", "wchan", "exit_signal", "minflt", "cminflt",
    "majflt", "startcode", "endcode", "nice", "itrealvalue", "processor", "rt_priority",
)  # fmt: skip

# Columns that identify a sample rather than describe it: never features.
ID_COLUMNS: tuple[str, ...] = ("UserId", "UUID")
