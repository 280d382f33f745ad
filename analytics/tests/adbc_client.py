"""A real Flight SQL client against sandwatch's server: the ADBC Flight SQL driver (PyPI
adbc-driver-flightsql), as analysts use it from Python and pandas.

Usage: adbc_client.py URI [TOKEN]. Prints one JSON object with what the driver saw; the Rust
test (analytics/tests/adbc_flight_sql.rs) checks it against the session's own answers.
"""

import json
import sys

import adbc_driver_flightsql.dbapi as flightsql

ROWS_SQL = (
    "SELECT pid, ppid, comm, sandbox_id, exit_code, event FROM process_events ORDER BY time, pid"
)
PARAM_SQL = "SELECT count(*) AS n FROM process_events WHERE sandbox_id = $1"
TABLE = "process_events"


def main() -> None:
    uri = sys.argv[1]
    kwargs = {}
    if len(sys.argv) > 2:
        # ADBC's standard options: the driver hands them to Handshake as Basic auth and sends
        # the bearer token the server answers with on every later call.
        kwargs["db_kwargs"] = {"username": "sandwatch", "password": sys.argv[2]}
    out = {}
    with flightsql.connect(uri, **kwargs) as conn:
        info = conn.adbc_get_info()
        out["vendor_name"] = info.get("vendor_name")

        with conn.cursor() as cur:
            cur.execute(ROWS_SQL)
            table = cur.fetch_arrow_table()
            out["columns"] = table.column_names
            out["rows"] = table.to_pylist()

            # Bound parameters go through a prepared statement (CreatePreparedStatement, DoPut).
            counts = {}
            for sandbox in ("sb-a", "sb-b", "nobody"):
                cur.execute(PARAM_SQL, parameters=(sandbox,))
                counts[sandbox] = cur.fetch_arrow_table().to_pylist()[0]["n"]
            out["param_counts"] = counts

            try:
                cur.execute("DROP TABLE file_events")
                cur.fetchall()
                out["drop"] = "allowed"
            except Exception as e:  # the driver's error carries the server's message
                out["drop"] = str(e)

        objects = conn.adbc_get_objects(depth="all").read_all().to_pylist()
        tables = {}
        for catalog in objects:
            for schema in catalog["catalog_db_schemas"] or []:
                if schema["db_schema_name"] != "public":
                    continue
                for t in schema["db_schema_tables"] or []:
                    tables[t["table_name"]] = {
                        "type": t["table_type"],
                        "columns": [c["column_name"] for c in t["table_columns"] or []],
                    }
        out["objects"] = tables

        schema = conn.adbc_get_table_schema(TABLE)
        out["table_schema"] = [f.name for f in schema]
        out["table_types"] = sorted(conn.adbc_get_table_types())
    print(json.dumps(out, default=str))


if __name__ == "__main__":
    main()
