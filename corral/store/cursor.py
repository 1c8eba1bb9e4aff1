"""The cursor every query of the SQL store runs on: one placeholder style, statements counted."""


ROWS_A_STATEMENT = 100  # rows of one multi-row INSERT (8 columns: within SQLite's 999 variables)


class Cursor:
    """A DB-API cursor that takes ``?`` placeholders and counts the statements it ran.

    The count lets a backend tell "failed before anything was sent" (safe to
    retry on a fresh connection) from "failed midway" (not safe).
    """

    def __init__(self, raw, placeholder: str):
        self.raw = raw
        self.placeholder = placeholder
        self.executed = 0

    def execute(self, sql: str, params=()):
        """Run one statement; ``?`` in ``sql`` becomes the backend's placeholder."""
        if self.placeholder != "?":
            sql = sql.replace("?", self.placeholder)
        if params:
            self.raw.execute(sql, tuple(params))
        else:  # no parameters: psycopg2 then leaves a literal % alone
            self.raw.execute(sql)
        self.executed += 1
        return self

    def execute_rows(self, head: str, rows: list, tail: str = "") -> None:
        """Run ``head VALUES (?, ...), (?, ...) tail`` over ``rows`` (tuples of one length),
        :data:`ROWS_A_STATEMENT` rows a statement: 10,000 rows were 10,000 round trips
        to PostgreSQL, seconds of a loop pass."""
        for i in range(0, len(rows), ROWS_A_STATEMENT):
            chunk = rows[i:i + ROWS_A_STATEMENT]
            one = "(" + ", ".join("?" * len(chunk[0])) + ")"
            self.execute(f"{head} VALUES {', '.join([one] * len(chunk))} {tail}",
                         [v for row in chunk for v in row])

    def fetchone(self):
        return self.raw.fetchone()

    def fetchall(self):
        return self.raw.fetchall()

    @property
    def rowcount(self) -> int:
        return self.raw.rowcount
