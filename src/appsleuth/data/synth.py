"""A deterministic generator of SherLock-like telemetry for the 18 teaching apps.

The real ``sherlock_18apps.csv`` is licence-restricted, so demos, tests and new users
get this stand-in. It simulates the collection process rather than the table: apps run
as processes on a few simulated phones, an agent samples every running process every
5 seconds, processes live and die (a restart resets the cumulative CPU counters), move
between foreground and background, and change their resource usage as sparse events.
The output has the layout, class proportions, scales, data issues and near-duplicate
time structure of the real file (see ``shared/reference/sherlock_18apps.md``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from appsleuth._fields import check_seed
from appsleuth.data._record import as_record
from appsleuth.data.layouts import (
    APP_COUNTS_18,
    APPS_18,
    INCOMPLETE_ROW_COLUMNS,
    LABEL_COLUMN,
    MALWARE_APP,
    SHERLOCK18_FEATURES,
    SHERLOCK18_INT_FEATURES,
)
from appsleuth.errors import DataError, SpecError

__all__ = ["MAX_ROWS", "check_row_count", "generate_sherlock"]

_REAL_ROWS = 273_129
# A larger table fits in no machine's memory; from 2**63 rows on, NumPy's integer
# arithmetic overflows instead of reporting that memory is short.
MAX_ROWS = 10**12
_REAL_INCOMPLETE = 52
# The real index runs 0..999,994 over 273,129 rows: one kept row per ~3.66 table rows.
_INDEX_STRIDE = 999_995 / _REAL_ROWS
_SNAPSHOT_MS = 5_000
# Mean spacing, in 5-second snapshots, between kept samples of one process: the
# teaching subset keeps roughly one row in 3.66 of the original table.
_GAP_P = 1 / 3.66
_MEAN_EPOCH_ROWS = 5.0  # rows between state changes of a process (sparse events)
_IMPORTANCE = np.array([100, 200, 300, 400], dtype=np.int64)
_STATES = np.array(["S", "R", "D", "Z"], dtype=object)
_T0_MS = 1_433_116_800_000  # 2015-06-01, inside the SherLock collection period


@dataclass(frozen=True)
class _Kind:
    """Resource profile of one kind of process an app runs (UI process, service...).

    Memory figures are in the units of the real columns (rss in pages, otherPrivateDirty
    in KiB, vsize in bytes); ``cpu`` is the typical background CPU_USAGE; ``p_imp`` the
    chances of importance 100/200/300/400; ``fg_prio`` the priority a foreground process
    sometimes runs at; ``net`` the chance that a background sample carries traffic;
    ``ut`` the relative CPU-tick rate; ``cut`` the chance a process has child CPU time.
    """

    app: str
    share: float
    threads: float
    rss: float
    opd: float
    vsize: float
    cpu: float
    p_imp: tuple[float, float, float, float]
    fg_prio: int = 20
    p_fg_prio: float = 0.0
    net: float = 0.02
    ut: float = 1.0
    st_ratio: float = 0.6
    cut: float = 0.0
    life: float = 500.0  # mean process lifetime in kept samples


# Hand-tuned so that apps differ mostly through their resource profile (threads,
# memory, address space, importance pattern) while overlapping on every single column:
# a network needs several hidden units to tell 18 apps apart, as on the real data.
_KINDS: tuple[_Kind, ...] = (
    _Kind("Google App", 0.6, 84, 12400, 13000, 2.250e9, 0.45, (0.10, 0.05, 0.45, 0.40),
          18, 0.4, 0.03, 1.2, 0.5, 0.3),
    _Kind("Google App", 0.4, 10, 2960, 560, 1.921e9, 0.03, (0.0, 0.60, 0.30, 0.10),
          net=0.002, ut=0.1, life=900),
    _Kind("Chrome", 0.75, 42, 8300, 5000, 2.095e9, 0.30, (0.15, 0.02, 0.25, 0.58),
          16, 0.3, 0.05, 1.5, 0.4),
    _Kind("Chrome", 0.25, 14, 5300, 8000, 1.990e9, 0.20, (0.10, 0.60, 0.20, 0.10),
          net=0.0, ut=0.8),
    _Kind("Facebook", 0.65, 118, 10900, 8800, 2.330e9, 0.20, (0.10, 0.05, 0.55, 0.30),
          14, 0.6, 0.03, 1.0, 0.5),
    _Kind("Facebook", 0.35, 11, 3400, 120, 2.097e9, 0.01, (0.0, 0.0, 0.70, 0.30),
          net=0.0, ut=0.02, life=900),
    _Kind("Geo News", 1.0, 14, 5700, 860, 1.893e9, 0.05, (0.06, 0.0, 0.50, 0.44),
          net=0.01, ut=0.3),
    _Kind("Messenger", 0.8, 72, 10400, 6200, 2.115e9, 0.20, (0.08, 0.05, 0.50, 0.37),
          15, 0.3, 0.02, 0.8),
    _Kind("Messenger", 0.2, 20, 5000, 1800, 1.955e9, 0.05, (0.0, 0.50, 0.40, 0.10),
          net=0.01, ut=0.2),
    _Kind("WhatsApp", 1.0, 56, 9000, 11500, 2.065e9, 0.25, (0.08, 0.10, 0.60, 0.22),
          19, 0.3, 0.04, 1.5, 0.6, 0.8),
    _Kind("Photos", 1.0, 13, 4000, 100, 1.924e9, 0.03, (0.04, 0.0, 0.55, 0.41),
          net=0.005, ut=0.2),
    _Kind("ES File Explorer", 1.0, 21, 6700, 2600, 1.980e9, 0.08, (0.05, 0.0, 0.20, 0.75),
          net=0.01, ut=0.5),
    _Kind("Gmail", 1.0, 32, 8200, 4600, 2.064e9, 0.12, (0.06, 0.05, 0.35, 0.54),
          net=0.02, ut=0.7),
    _Kind("Calendar", 1.0, 28, 7900, 5300, 1.935e9, 0.04, (0.04, 0.0, 0.30, 0.66),
          net=0.01, ut=0.3),
    _Kind("Moovit", 1.0, 46, 6900, 3700, 2.015e9, 0.15, (0.10, 0.0, 0.30, 0.60),
          net=0.03, ut=0.8),
    _Kind("Waze", 1.0, 66, 15700, 23000, 2.380e9, 0.80, (0.20, 0.20, 0.30, 0.30),
          12, 0.5, 0.05, 2.0, 0.5),
    _Kind("Hangouts", 1.0, 17, 15000, 15000, 2.048e9, 0.50, (0.05, 0.0, 0.30, 0.65),
          net=0.02, ut=0.6),
    _Kind("YouTube", 1.0, 44, 10500, 8500, 2.165e9, 0.30, (0.15, 0.05, 0.20, 0.60),
          10, 0.5, 0.06, 1.2),
    _Kind("Maps", 1.0, 54, 12400, 17000, 2.230e9, 0.40, (0.12, 0.10, 0.28, 0.50),
          9, 0.4, 0.05, 1.2),
    _Kind("Skype", 1.0, 33, 8400, 6600, 2.135e9, 0.15, (0.06, 0.0, 0.50, 0.44),
          13, 0.4, 0.03, 0.8),
    _Kind(MALWARE_APP, 1.0, 11, 4300, 1500, 1.910e9, 0.06, (0.02, 0.30, 0.60, 0.08),
          net=0.01, ut=0.5, life=1200),
    _Kind("Messages", 1.0, 18, 5500, 1900, 1.945e9, 0.04, (0.08, 0.0, 0.30, 0.62),
          net=0.01, ut=0.3),
)  # fmt: skip


def check_row_count(name: str, value: int) -> None:
    """Raise SpecError when ``value`` rows are more than :data:`MAX_ROWS`.

    Args:
        name: What the count is called where it was given (``rows``, ``--rows``).
        value: The row count, an integer.
    """
    if value > MAX_ROWS:
        raise SpecError(
            f"{name} must be at most {MAX_ROWS:,} (a larger table fits in no machine's "
            f"memory); received {name}={value!r}"
        )


def _check_args(n_rows: object, apps: Sequence[str] | None) -> tuple[int, list[str]]:
    if isinstance(n_rows, bool) or not isinstance(n_rows, int | np.integer) or n_rows < 1:
        raise SpecError(f"n_rows must be a positive integer; received n_rows={n_rows!r}")
    check_row_count("n_rows", n_rows)
    if apps is None:
        return int(n_rows), list(APPS_18)
    if isinstance(apps, str):
        apps = [apps]
    chosen = list(dict.fromkeys(apps))
    unknown = [a for a in chosen if a not in APP_COUNTS_18]
    if unknown or not chosen:
        found = ", ".join(map(repr, unknown)) if unknown else "an empty list"
        raise DataError(f"apps: unknown app name(s) {found}; valid names are: {', '.join(APPS_18)}")
    # Keep the canonical order so the same subset gives the same frame in any order.
    return int(n_rows), [a for a in APPS_18 if a in chosen]


def _allocate(total: int, weights: np.ndarray, min_one: bool) -> np.ndarray:
    """Split ``total`` into integer parts proportional to ``weights`` (largest remainder)."""
    exact = weights / weights.sum() * total
    parts = np.floor(exact).astype(np.int64)
    order = np.argsort(-(exact - parts), kind="stable")
    parts[order[: total - parts.sum()]] += 1
    if min_one and total >= len(parts):
        while (parts == 0).any():
            parts[np.argmax(parts)] -= 1
            parts[np.argmin(parts)] += 1
    return parts


def _group_cumsum(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """Cumulative sum of ``values`` restarting at every row where ``starts`` is true."""
    total = np.cumsum(values)
    offsets = np.maximum.accumulate(np.where(starts, total - values, 0))
    return total - offsets


def _kind_table(apps: list[str]) -> dict[str, np.ndarray]:
    kinds = [k for k in _KINDS if k.app in apps]
    fields = {
        name: np.array([getattr(k, name) for k in kinds], dtype=float)
        for name in (
            "share",
            "threads",
            "rss",
            "opd",
            "vsize",
            "cpu",
            "fg_prio",
            "p_fg_prio",
            "net",
            "ut",
            "st_ratio",
            "cut",
            "life",
        )
    }
    fields["app"] = np.array([apps.index(k.app) for k in kinds])
    fields["p_imp"] = np.array([k.p_imp for k in kinds], dtype=float)
    fields["malware"] = np.array([k.app == MALWARE_APP for k in kinds])
    return fields


def _simulate(n_rows: int, apps: list[str], rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Simulate the sampled processes; return per-row columns in stream order."""
    kt = _kind_table(apps)
    n_apps = len(apps)
    app_rows = _allocate(n_rows, np.array([APP_COUNTS_18[a] for a in apps], float), True)
    n_dev = int(np.clip(round(np.sqrt(n_rows) / 13), 1, 40))

    # Streams: one (device, app) process slot each. Not every phone runs every app.
    stream_app, stream_dev, stream_rows = [], [], []
    for a in range(n_apps):
        if app_rows[a] == 0:
            continue
        present = rng.random(n_dev) < 0.75
        present[rng.integers(n_dev)] = True
        devs = np.flatnonzero(present)
        weights = rng.dirichlet(np.full(len(devs), 2.0))
        counts = _allocate(int(app_rows[a]), weights, False)
        keep = counts > 0
        stream_app.append(np.full(keep.sum(), a))
        stream_dev.append(devs[keep])
        stream_rows.append(counts[keep])
    s_app = np.concatenate(stream_app)
    s_dev = np.concatenate(stream_dev)
    s_rows = np.concatenate(stream_rows)
    n_streams = len(s_rows)

    row_stream = np.repeat(np.arange(n_streams), s_rows)
    stream_first = np.zeros(n_rows, dtype=bool)
    stream_first[np.cumsum(s_rows) - s_rows] = True
    row_app = s_app[row_stream]

    # Process lifetimes: each row starts a new process with probability 1/life. The kind
    # of process (UI, background service...) is drawn per process: on a phone an app's
    # process slot restarts as one of its kinds.
    app_kinds = [np.flatnonzero(kt["app"] == a) for a in range(n_apps)]
    mean_life = np.array([np.average(kt["life"][k], weights=kt["share"][k]) for k in app_kinds])
    inst_start = stream_first | (rng.random(n_rows) < 1.0 / mean_life[row_app])
    inst_of_row = np.cumsum(inst_start) - 1
    n_inst = int(inst_start.sum())
    inst_app = row_app[inst_start]
    inst_dev = s_dev[row_stream[inst_start]]
    inst_first = stream_first[inst_start]
    inst_kind = np.empty(n_inst, dtype=np.int64)
    u = rng.random(n_inst)
    for a, kinds in enumerate(app_kinds):
        sel = inst_app == a
        cdf = np.cumsum(kt["share"][kinds])
        inst_kind[sel] = kinds[np.searchsorted(cdf / cdf[-1], u[sel], side="right")]

    # Phones differ (Android version, RAM): small shifts shared by all their processes.
    dev_vs = rng.normal(0.0, 0.005, n_dev)
    dev_mem = np.exp(rng.normal(0.0, 0.08, n_dev))
    dev_thr = np.exp(rng.normal(0.0, 0.04, n_dev))

    k = inst_kind
    i_thr = kt["threads"][k] * dev_thr[inst_dev] * np.exp(rng.normal(0, 0.08, n_inst))
    i_rss = kt["rss"][k] * dev_mem[inst_dev] * np.exp(rng.normal(0, 0.12, n_inst))
    i_opd = kt["opd"][k] * dev_mem[inst_dev] * np.exp(rng.normal(0, 0.22, n_inst))
    i_vs = kt["vsize"][k] * (1 + dev_vs[inst_dev] + rng.normal(0, 0.006, n_inst))
    # A process already running when observation starts has a long CPU history; a
    # restarted one starts from a handful of ticks.
    long_ut = np.minimum(30_000, np.exp(rng.normal(np.log(3000 * kt["ut"][k]), 1.1, n_inst)))
    i_ut0 = np.where(inst_first, long_ut, rng.integers(2, 60, n_inst)).round()
    i_st0 = np.maximum(3, (i_ut0 * kt["st_ratio"][k] * rng.uniform(0.5, 1.5, n_inst)).round())
    i_cut = np.where(
        rng.random(n_inst) < kt["cut"][k], np.minimum(11, rng.geometric(0.35, n_inst)), 0
    ).astype(float)

    # Epochs: stretches where a process's state does not change; changes are sparse.
    ep_start = inst_start | (rng.random(n_rows) < 1.0 / _MEAN_EPOCH_ROWS)
    ep_of_row = np.cumsum(ep_start) - 1
    n_ep = int(ep_start.sum())
    ep_inst = inst_of_row[ep_start]
    ek = inst_kind[ep_inst]
    cdf = np.cumsum(kt["p_imp"][ek], axis=1)
    imp_cat = (rng.random(n_ep)[:, None] > cdf / cdf[:, -1:]).sum(axis=1)
    fg = imp_cat == 0
    lru = np.where(imp_cat == 3, np.clip(rng.normal(11.5, 2.5, n_ep).round(), 1, 16), 0)
    prio = np.where(fg & (rng.random(n_ep) < kt["p_fg_prio"][ek]), kt["fg_prio"][ek], 20.0)
    base_thr = i_thr[ep_inst] * np.where(fg, 1.15, 1.0)
    e_thr = np.maximum(2, (base_thr + rng.normal(0, 1, n_ep) * np.maximum(0.6, 0.04 * base_thr)))
    e_rss = i_rss[ep_inst] * np.where(fg, 1.35, 1.0) * np.exp(rng.normal(0, 0.06, n_ep))
    e_opd = i_opd[ep_inst] * np.where(fg, 1.6, 1.0) * np.exp(rng.normal(0, 0.12, n_ep))
    e_vs = i_vs[ep_inst] * (1 + np.where(fg, 0.02, 0.0) + rng.normal(0, 0.002, n_ep))
    e_cpu = kt["cpu"][ek] * np.where(fg, 8.0, 1.0) * np.exp(rng.normal(0, 0.9, n_ep))
    st_u = rng.random(n_ep)
    e_state = np.where(st_u < np.where(fg, 0.15, 0.012), 1, np.where(st_u > 0.996, 2, 0))
    # Moriarty runs attack sessions: stretches in which it exfiltrates data.
    exfil = kt["malware"][ek] & (rng.random(n_ep) < 0.12)

    r_ep = ep_of_row
    r_kind = inst_kind[inst_of_row]
    r_fg = fg[r_ep]

    # Cumulative CPU ticks: a foreground process burns CPU every sample; a background
    # one only when it wakes up (at an epoch start).
    rate = kt["ut"][r_kind]
    incr = np.where(
        r_fg,
        rng.poisson(6.0 * rate),
        np.where(ep_start & ~inst_start, rng.poisson(4.0 * rate), 0),
    ).astype(float)
    incr[inst_start] = 0
    utime = i_ut0[inst_of_row] + _group_cumsum(incr, inst_start)
    st_incr = rng.binomial(incr.astype(np.int64), np.minimum(1.0, kt["st_ratio"][r_kind]))
    stime = i_st0[inst_of_row] + _group_cumsum(st_incr.astype(float), inst_start)

    # Network deltas since the previous sample: zero most of the time, bursts otherwise.
    p_net = kt["net"][r_kind] * np.where(r_fg, 6.0, 1.0)
    burst = rng.random(n_rows) < p_net
    pk = np.exp(rng.normal(1.3, 1.4, n_rows))
    # A few downloads (videos, map tiles, updates) move megabytes within one sample.
    pk = np.minimum(7000, np.ceil(pk * np.where(rng.random(n_rows) < 0.01, 60, 1)))
    rx_pk = np.where(burst & (rng.random(n_rows) < 0.9), pk, 0)
    tx_pk = np.where(burst, np.ceil(pk * rng.uniform(0.2, 1.0, n_rows)), 0)
    rx_b = rx_pk * rng.integers(60, 1460, n_rows)
    tx_b = tx_pk * rng.integers(52, 600, n_rows)
    leak = exfil[r_ep] & (rng.random(n_rows) < 0.5)
    leak_pk = np.ceil(np.exp(rng.normal(3.0, 1.3, n_rows)))
    tx_pk = np.where(leak, tx_pk + leak_pk, tx_pk)
    tx_b = np.where(leak, tx_b + leak_pk * rng.integers(1200, 1460, n_rows), tx_b)
    rx_pk = np.where(leak, rx_pk + np.ceil(leak_pk / 3), rx_pk)
    rx_b = np.where(leak, rx_b + np.ceil(leak_pk / 3) * 52, rx_b)
    # Counters read -1 on the first sample after a reboot, and glitch slightly negative
    # now and then (the real file's minima are -280, -11, -60 and -1).
    reboot = inst_start & ~stream_first & (rng.random(n_rows) < 0.15)
    net = np.stack([rx_b, rx_pk, tx_b, tx_pk]).astype(np.int64)
    net[:, reboot] = -1
    glitch = np.flatnonzero(rng.random(n_rows) < 1.5e-4)
    col = rng.integers(0, 4, len(glitch))
    low = np.array([-280, -11, -60, -1])[col]
    net[col, glitch] = rng.integers(low, 0)

    state = e_state[r_ep]
    rss = e_rss[r_ep].round()
    vsize = (e_vs[r_ep] / 4096).round() * 4096
    # Some processes are caught as zombies on their last sample: no memory left.
    inst_last = np.r_[inst_start[1:], True]
    zombie = inst_last & (rng.random(n_rows) < 0.03)
    state = np.where(zombie, 3, state)
    rss[zombie] = 0.0
    vsize[zombie] = 0.0

    return {
        "stream": row_stream,
        "stream_first": stream_first,
        "inst_start": inst_start,
        "device": s_dev[row_stream],
        "n_dev": np.array(n_dev),
        "app": row_app,
        "CPU_USAGE": e_cpu[r_ep].round(2),
        "UidRxBytes": net[0],
        "UidRxPackets": net[1],
        "UidTxBytes": net[2],
        "UidTxPackets": net[3],
        "cutime": i_cut[inst_of_row],
        "importance": _IMPORTANCE[imp_cat][r_ep],
        "lru": lru[r_ep].astype(np.int64),
        "num_threads": e_thr[r_ep].round(),
        "otherPrivateDirty": (e_opd[r_ep] / 4).round().astype(np.int64) * 4,
        "priority": prio[r_ep],
        "rss": rss,
        "state": state,
        "stime": stime,
        "utime": utime,
        "vsize": vsize,
    }


def _timestamps(sim: dict[str, np.ndarray], n_rows: int, rng: np.random.Generator) -> np.ndarray:
    """Snapshot time (epoch ms) of every row; all apps in one snapshot of a phone share it."""
    stream, first, inst_start = sim["stream"], sim["stream_first"], sim["inst_start"]
    n_streams = int(stream[-1]) + 1
    gap = rng.geometric(_GAP_P, n_rows)
    gap[first] = 0
    span = np.bincount(stream, weights=gap, minlength=n_streams)
    device_of_stream = sim["device"][first]
    n_dev = int(sim["n_dev"])
    window = np.zeros(n_dev)
    np.maximum.at(window, device_of_stream, span)
    window = window * 1.15 + 50
    # An app used less than the busiest one on its phone is simply not running most of
    # the time: the slack goes into downtime between its processes and a leading offset.
    slack = window[device_of_stream] - span
    down = np.where(inst_start, rng.exponential(1.0, n_rows), 0.0)
    down_total = np.bincount(stream, weights=down, minlength=n_streams)
    lead = rng.exponential(1.0, n_streams)
    scale = slack / (down_total + lead)
    steps = gap + np.floor(down * scale[stream])
    snap = np.floor(lead * scale)[stream] + _group_cumsum(steps, first)
    snap = snap.astype(np.int64)
    dev = sim["device"]
    # Phones join the study at different times but overlap, as SherLock's users did.
    dev_t0 = _T0_MS + rng.integers(0, 4 * 3600 * 1000, n_dev) + np.arange(n_dev) * 997
    uuid = dev_t0[dev] + snap * _SNAPSHOT_MS + (snap * 37) % 53
    return uuid


def generate_sherlock(
    n_rows: int = _REAL_ROWS,
    *,
    apps: Sequence[str] | None = None,
    seed: int = 0,
    with_ids: bool = False,
) -> pd.DataFrame:
    """Generate a synthetic table in the ``sherlock_18apps`` layout.

    Args:
        n_rows: Number of rows; defaults to 273,129, the size of the real file.
        apps: Apps to include, default None (all 18 with the real class proportions).
            A subset keeps the proportions among the chosen apps.
        seed: Seed of the random generator, default 0; the same seed gives the same frame.
        with_ids: Also return the raw layout's ``UserId`` (hashed phone id) and ``UUID``
            (snapshot time, epoch ms) as the first two columns; default False.

    Returns:
        The frame, rows in time order, an increasing integer index with gaps, and the
        project's metadata in ``df.attrs["appsleuth"]``, marked synthetic.

    Raises:
        SpecError: ``n_rows`` is not a positive integer, or ``seed`` not one from 0 to
            2**32 - 1.
        DataError: ``apps`` names an app that is not one of the 18.
    """
    n_rows, chosen = _check_args(n_rows, apps)
    check_seed("seed", seed)
    rng = np.random.default_rng(seed)
    sim = _simulate(n_rows, chosen, rng)
    uuid = _timestamps(sim, n_rows, rng)
    # File order is time order across phones and apps, as in the real file.
    order = np.lexsort((sim["app"], sim["device"], uuid))

    cols: dict[str, np.ndarray] = {}
    if with_ids:
        n_dev = int(sim["n_dev"])
        # A separate stream, so that asking for ids leaves every other column unchanged.
        ids = np.random.default_rng([seed, 1]).choice(16**10, size=n_dev, replace=False)
        user = np.array([f"{v:010x}" for v in ids], dtype=object)
        cols["UserId"] = user[sim["device"][order]]
        cols["UUID"] = uuid[order].astype(np.int64)
    cols[LABEL_COLUMN] = np.array(chosen, dtype=object)[sim["app"][order]]
    for name in SHERLOCK18_FEATURES:
        if name == "state":
            cols[name] = _STATES[sim["state"][order]]
        elif name == "guest_time":
            cols[name] = np.zeros(n_rows)
        elif name == "cminflt":
            cols[name] = np.full(n_rows, np.nan)
        elif name in SHERLOCK18_INT_FEATURES:
            cols[name] = sim[name][order].astype(np.int64)
        else:
            cols[name] = sim[name][order].astype(np.float64)

    n_bad = round(n_rows * _REAL_INCOMPLETE / _REAL_ROWS)
    if n_bad:
        bad = rng.choice(n_rows, size=n_bad, replace=False)
        for name in INCOMPLETE_ROW_COLUMNS:
            if name == "state":
                cols[name][bad] = None
            else:
                cols[name][bad] = np.nan

    # The real file is a subsample of a larger table: keep a gappy increasing index.
    span = max(n_rows, round(n_rows * _INDEX_STRIDE))
    index = np.sort(rng.choice(span - 1, size=n_rows - 1, replace=False)) + 1
    index = np.r_[0, index].astype(np.int64)

    df = pd.DataFrame(
        {name: pd.Series(values, index=index, dtype=values.dtype) for name, values in cols.items()}
    )
    df.index.name = None
    ids_cols = ["UserId", "UUID"] if with_ids else []
    df.attrs["appsleuth"] = as_record(
        {
            "source": "synthetic",
            "dataset": f"synthetic-sherlock18(seed={seed})",
            "synthetic": True,
            "layout": "sherlock18",
            "label": LABEL_COLUMN,
            "features": list(SHERLOCK18_FEATURES),
            "categorical": ["state"],
            "id_columns": ids_cols,
            "time_column": "UUID" if with_ids else None,
            # As a loaded table records them: columns added later are then told apart
            # (not features), whether the table was generated now or read from the cache.
            "columns": list(df.columns),
        }
    )
    return df
