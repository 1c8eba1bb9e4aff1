"""The SQL of runs (scheduled, triggered and one-off), mixed into SQLStore.

Exactly once rests on two things here: the ``runs`` table's
``UNIQUE (app, process, slot)``, and :meth:`RunQueries.write_runs`, which
checks the leader's epoch, refuses a slot that already has a run and writes
the run rows, their desired instances and their events in ONE transaction, so
an agent is only ever sent a run whose row is committed.
"""
from typing import Optional

from corral.store.base import Conflict, DesiredInstance, RunRecord
from corral.store.schema import RUN_COLUMNS, canonical_json, run_from_row, run_to_row

_MARKS = "(" + ", ".join("?" * len(RUN_COLUMNS.split(","))) + ")"


class RunQueries:
    """Runs for :class:`corral.store.sql.SQLStore` (which supplies ``_run``,
    ``_check_epoch``, ``_now`` and ``_add_event``)."""

    def list_runs(self, app: Optional[str] = None, run_id: Optional[str] = None) -> list:
        """Runs (all, one app's, or the one with ``run_id``), oldest first."""
        def work(cur):
            where, args = [], []
            for column, value in (("app", app), ("id", run_id)):
                if value is not None:
                    where.append(f"{column} = ?")
                    args.append(value)
            sql = f"SELECT {RUN_COLUMNS} FROM runs" + (" WHERE " + " AND ".join(where) if where else "")
            cur.execute(sql + " ORDER BY created_at, id", args)
            return [run_from_row(row) for row in cur.fetchall()]
        return self._run(work, write=False)

    def request_run(self, run: RunRecord, event: tuple) -> RunRecord:
        """Record a ``requested`` run (``corral trigger`` / ``corral run``) and its audit
        ``event`` ``(kind, name, reason, message, actor)`` in one transaction; the leader
        places it. Returns the run with the store's time as ``created_at``."""
        def work(cur):
            now = self._now(cur)
            row = RunRecord(**{**run.__dict__, "created_at": now, "state": "requested"})
            cur.execute(f"INSERT INTO runs ({RUN_COLUMNS}) VALUES {_MARKS}", run_to_row(row))
            self._add_event(cur, now, *event)
            return row
        return self._run(work, write=True)

    def report_exit(self, run_id: str, code: int) -> bool:
        """Record the exit code of an attached run's command (``corral run`` reports it when
        the command ends); the leader then ends the run. False when no such run is active."""
        def work(cur):
            cur.execute("UPDATE runs SET exit_code = ? WHERE id = ? AND kind = 'attached' AND exit_code IS NULL "
                        "AND state IN ('pending', 'running')", (code, run_id))
            return cur.rowcount == 1
        return self._run(work, write=True)

    def write_runs(self, epoch: int, runs: list = (), boot: list = (), stop: list = (), prune: list = (),
                   events: list = ()) -> None:
        """The leader's runs, in ONE transaction fenced on ``epoch``: insert or update
        ``runs`` (RunRecords), insert ``boot`` (their DesiredInstances), delete the desired
        rows ``stop`` and the run rows ``prune`` (ids), append ``events``. A new run for a
        slot that already has one raises Conflict and writes nothing."""
        def work(cur):
            self._check_epoch(cur, epoch)
            now = self._now(cur)
            self._refuse_taken_slots(cur, runs)
            for run in runs:
                cur.execute(
                    f"INSERT INTO runs ({RUN_COLUMNS}) VALUES {_MARKS} ON CONFLICT (id) DO UPDATE SET "
                    "state = excluded.state, node = excluded.node, exit_code = excluded.exit_code, "
                    "message = excluded.message, started_at = excluded.started_at, "
                    "finished_at = excluded.finished_at", run_to_row(run))
            for inst in boot:
                cur.execute("INSERT INTO desired_instances (id, app, process, node, revision, image, spec, "
                            "created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", _desired_row(inst))
            for ids, table in ((list(stop), "desired_instances"), (list(prune), "runs")):
                if ids:
                    cur.execute(f"DELETE FROM {table} WHERE id IN ({', '.join('?' * len(ids))})", ids)
            for event in events:
                self._add_event(cur, now, *event)
        self._run(work, write=True)

    def _refuse_taken_slots(self, cur, runs) -> None:
        """Raise Conflict when one of ``runs`` is a new row for a slot another run holds."""
        for run in runs:
            if run.slot is None:
                continue
            cur.execute("SELECT id FROM runs WHERE app = ? AND process = ? AND slot = ?",
                        (run.app, run.process, run.slot))
            row = cur.fetchone()
            if row is not None and row[0] != run.id:
                raise Conflict(f"slot {run.slot} of {run.app}/{run.process} already has run {row[0]}")


def _desired_row(inst: DesiredInstance) -> tuple:
    return (inst.id, inst.app, inst.process, inst.node, inst.revision, inst.image, canonical_json(inst.spec),
            inst.created_at)
