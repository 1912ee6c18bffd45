#!/usr/bin/env python3
"""The tools MySQL users bring, against a real Canopy cluster (a master aggregator and two leaves, ci/cluster.py):

1. mariadb-slap: a bounded mixed load (auto-generated and our own SQL), its exit code and the rows it wrote;
2. SQLAlchemy (pymysql dialect): reflection of tables, columns, primary keys and indexes, then an ORM session that
   inserts, queries, updates and deletes;
3. the catalog queries DBeaver (through MySQL Connector/J) and MySQL Workbench send when they open a connection and
   browse a schema, listed one by one below with what each must answer;
4. Node.js's mysql2 driver: a small CRUD program (ci/node/crud.js) with prepared statements and plain queries;
5. a table dumped by mariadb-dump from a real MariaDB server (started here on a loopback port in a temporary data
   directory, stopped afterwards) loads into Canopy with the same rows.

Every check runs even when an earlier one failed; the last line counts them. Every process started is stopped.

Usage: tools.py PATH_TO_CANOPY_BINARY
"""
import datetime
import decimal
import os
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
import warnings

import pymysql

from cluster import Cluster, connect, free_port, mariadb, stop

HERE = os.path.dirname(os.path.abspath(__file__))


def run(args, timeout_s=300, **kw):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout_s, **kw)


def query(conn, sql):
    """Runs `sql`; returns (column names, rows as tuples)."""
    with conn.cursor() as c:
        c.execute(sql)
        names = [d[0] for d in c.description] if c.description else []
        return names, tuple(c.fetchall())


# ---------------------------------------------------------------------------------------------------------------
# 1. mariadb-slap

def check_slap(port):
    """mariadb-slap twice: its auto-generated mixed load (CREATE SCHEMA, CREATE TABLE, inserts, then full reads and
    inserts from 4 clients on the keyless table it makes), and our own --create/--query load of point reads, upserts,
    updates and aggregates on a distributed table with a key. Both must exit 0 and leave the rows they wrote.
    Then its key and update loads, which need the `id serial` key --auto-generate-sql-add-autoincrement declares
    (point reads and updates by id: the first NOT NULL unique key is the shard key, docs/sql.md)."""
    base = ["mariadb-slap", "-h", "127.0.0.1", "-P", str(port), "-u", "root", "--concurrency=4"]

    def slap(*args, keep):
        """Two iterations (each creates the schema, loads, runs and drops it), or one that keeps the schema."""
        rounds = ["--iterations=1", "--no-drop"] if keep else ["--iterations=2"]
        out = run(base + ["--number-of-queries=200", *rounds, *args])
        assert out.returncode == 0, (args, out.stdout, out.stderr)
        assert "Average number of seconds to run all queries" in out.stdout, out.stdout
        assert f"Number of clients running queries: 4" in out.stdout, out.stdout

    auto = ["--auto-generate-sql", "--auto-generate-sql-load-type=mixed", "--auto-generate-sql-write-number=50",
            "--create-schema=slapauto"]
    slap(*auto, keep=False)
    slap(*auto, keep=True)
    conn = connect(port)
    names, rows = query(conn, "SELECT COUNT(*), COUNT(intcol1), COUNT(charcol1) FROM slapauto.t1")
    # 50 preloaded rows plus the inserts among the mixed load's 200 queries (slap mixes them at random), every
    # column filled.
    count, ints, chars = rows[0]
    assert 50 < count <= 50 + 200 and count == ints == chars, rows

    for load_type in ["key", "update", "mixed"]:
        slap("--auto-generate-sql", "--auto-generate-sql-add-autoincrement", f"--auto-generate-sql-load-type={load_type}",
             f"--create-schema=slap{load_type}", keep=False)
    slap("--auto-generate-sql", "--auto-generate-sql-add-autoincrement", "--auto-generate-sql-load-type=update",
         "--auto-generate-sql-write-number=50", "--create-schema=slapserial", keep=True)
    names, rows = query(conn, "SELECT COUNT(*), COUNT(DISTINCT id), MAX(id) - MIN(id) + 1, MIN(id) FROM slapserial.t1")
    # The preloaded rows got AUTO_INCREMENT ids from this aggregator's range: unique and consecutive from 1.
    count, distinct, span, first = rows[0]
    assert count > 0 and count == distinct == span and first == 1, rows

    create = ("CREATE TABLE items (id INT PRIMARY KEY, qty INT NOT NULL, label VARCHAR(32));"
              + "INSERT INTO items VALUES " + ",".join(f"({i}, {i % 10}, 'item {i}')" for i in range(1, 201)))
    load = ("SELECT qty, label FROM items WHERE id = 17;"
            "INSERT INTO items (id, qty, label) VALUES (1000, 1, 'new') ON DUPLICATE KEY UPDATE qty = qty + 1;"
            "UPDATE items SET qty = qty + 1 WHERE id = 42;"
            "SELECT COUNT(*), SUM(qty) FROM items;")
    own = ["--create-schema=slapown", "--delimiter=;", f"--create={create}", f"--query={load}"]
    slap(*own, keep=False)
    slap(*own, keep=True)
    names, rows = query(conn, "SELECT COUNT(*), (SELECT qty FROM slapown.items WHERE id = 42), "
                              "(SELECT qty FROM slapown.items WHERE id = 1000) FROM slapown.items")
    # Each of the 4 clients runs 50 of the 200 queries, cycling through the 4 statements from the first: 13
    # upserts of id 1000 and 12 updates of id 42 each, so 1 insert + 51 updates of id 1000 and 48 updates of id 42
    # (qty 2 before).
    assert rows[0] == (201, 2 + 48, 1 + 51), rows
    conn.close()


# ---------------------------------------------------------------------------------------------------------------
# 2. SQLAlchemy

def check_sqlalchemy(port):
    """Reflection through SQLAlchemy's MySQL dialect (which reads SHOW CREATE TABLE, SHOW FULL TABLES and
    INFORMATION_SCHEMA), then the ORM: insert with an AUTO_INCREMENT key, query, update, delete, each committed."""
    import sqlalchemy as sa
    from sqlalchemy import orm, types

    setup = connect(port)
    with setup.cursor() as c:
        c.execute("CREATE DATABASE orm PARTITIONS 4")
        c.execute("CREATE TABLE orm.orders (id BIGINT NOT NULL AUTO_INCREMENT, customer INT NOT NULL, "
                  "amount DECIMAL(10,2) DEFAULT '0.00', note VARCHAR(40), placed DATETIME, data BLOB, "
                  "PRIMARY KEY (id, customer), UNIQUE KEY by_ref (customer, id), KEY by_note (note), "
                  "SHARD KEY (customer))")
        c.execute("CREATE REFERENCE TABLE orm.customers (id INT PRIMARY KEY, name VARCHAR(30) NOT NULL, "
                  "score DOUBLE, KEY by_name (name))")
    setup.close()

    engine = sa.create_engine(f"mysql+pymysql://root:@127.0.0.1:{port}/orm", pool_pre_ping=True)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            inspector = sa.inspect(engine)
            assert "orm" in inspector.get_schema_names(), inspector.get_schema_names()
            assert inspector.get_table_names() == ["customers", "orders"], inspector.get_table_names()
            assert inspector.has_table("orders") and not inspector.has_table("nope")

            columns = {c["name"]: c for c in inspector.get_columns("orders")}
            assert list(columns) == ["id", "customer", "amount", "note", "placed", "data"], list(columns)
            expect = {
                "id": (types.BIGINT, False), "customer": (types.INTEGER, False), "amount": (types.DECIMAL, True),
                "note": (types.VARCHAR, True), "placed": (types.DATETIME, True), "data": (types.BLOB, True),
            }
            for name, (kind, nullable) in expect.items():
                col = columns[name]
                assert isinstance(col["type"], kind), (name, col["type"])
                assert col["nullable"] == nullable, (name, col)
            assert (columns["amount"]["type"].precision, columns["amount"]["type"].scale) == (10, 2)
            assert columns["note"]["type"].length == 40
            assert columns["id"]["autoincrement"] is True, columns["id"]
            assert columns["amount"]["default"] == "'0.00'", columns["amount"]["default"]

            pk = inspector.get_pk_constraint("orders")
            assert pk["constrained_columns"] == ["id", "customer"], pk
            indexes = [(i["name"], i["column_names"], bool(i["unique"])) for i in inspector.get_indexes("orders")]
            # Known gap (docs/sql.md): the MySQL dialect reads SHOW CREATE TABLE's `SHARD KEY (customer)` line as
            # an unnamed plain index of an unknown kind; the real indexes are exactly the others.
            assert indexes == [("by_note", ["note"], False), ("by_ref", ["customer", "id"], True),
                               (None, ["customer"], False)], indexes
            uniques = inspector.get_unique_constraints("orders")
            assert [(u["name"], u["column_names"]) for u in uniques] == [("by_ref", ["customer", "id"])], uniques
            assert inspector.get_foreign_keys("orders") == []
            assert inspector.get_pk_constraint("customers")["constrained_columns"] == ["id"]
            assert [(i["name"], i["column_names"]) for i in inspector.get_indexes("customers")] == \
                [("by_name", ["name"])]
            customers = {c["name"]: c for c in inspector.get_columns("customers")}
            assert isinstance(customers["score"]["type"], types.DOUBLE) and customers["name"]["nullable"] is False

            reflected = sa.MetaData()
            reflected.reflect(bind=engine)
            assert sorted(reflected.tables) == ["customers", "orders"], reflected.tables
        # Nothing else in the reflected schema surprises the dialect than that SHARD KEY line (the gap above).
        unknown = {str(w.message) for w in caught}
        assert unknown <= {"Converting unknown KEY type SHARD to a plain KEY"}, unknown

        check_orm(engine)
    finally:
        engine.dispose()


def check_orm(engine):
    import sqlalchemy as sa
    from sqlalchemy import orm

    class Base(orm.DeclarativeBase):
        pass

    class Customer(Base):
        __tablename__ = "customers"
        id: orm.Mapped[int] = orm.mapped_column(primary_key=True, autoincrement=False)
        name: orm.Mapped[str] = orm.mapped_column(sa.String(30))
        score: orm.Mapped[float | None] = orm.mapped_column(sa.Double)

    class Order(Base):
        __tablename__ = "orders"
        id: orm.Mapped[int] = orm.mapped_column(sa.BigInteger, primary_key=True, autoincrement=True)
        customer: orm.Mapped[int] = orm.mapped_column(primary_key=True, autoincrement=False)
        amount: orm.Mapped[decimal.Decimal | None] = orm.mapped_column(sa.Numeric(10, 2))
        note: orm.Mapped[str | None] = orm.mapped_column(sa.String(40))
        placed: orm.Mapped[datetime.datetime | None] = orm.mapped_column(sa.DateTime)

    placed = datetime.datetime(2024, 5, 6, 7, 8, 9)
    with orm.Session(engine) as session:
        session.add_all([Customer(id=i, name=f"c{i}", score=i * 0.5) for i in range(1, 4)])
        orders = [Order(customer=1 + i % 3, amount=decimal.Decimal("1.25") * i, note=f"o'{i}", placed=placed)
                  for i in range(1, 11)]
        session.add_all(orders)
        session.commit()
        ids = [o.id for o in orders]
        assert len(set(ids)) == 10 and all(i > 0 for i in ids), ids

    with orm.Session(engine) as session:
        assert session.scalar(sa.select(sa.func.count()).select_from(Order)) == 10
        o = session.get(Order, (ids[3], 2))
        assert o is not None and o.note == "o'4" and o.amount == decimal.Decimal("5.00"), o and vars(o)
        # Known gap (docs/sql.md, "Result column types"): a DATETIME column reaches the driver as a string, so
        # SQLAlchemy's DateTime (which leaves the conversion to PyMySQL) gives the ISO text of the value written.
        assert o.placed == placed.strftime("%Y-%m-%d %H:%M:%S"), o.placed
        rows = session.execute(
            sa.select(Customer.name, sa.func.count(Order.id))
            .join(Order, Order.customer == Customer.id)
            .group_by(Customer.name).order_by(Customer.name)
        ).all()
        assert [tuple(r) for r in rows] == [("c1", 3), ("c2", 4), ("c3", 3)], rows

        o.note = "changed"
        session.execute(sa.update(Customer).where(Customer.id == 3).values(score=Customer.score + 10))
        session.commit()

    with orm.Session(engine) as session:
        assert session.get(Order, (ids[3], 2)).note == "changed"
        assert session.get(Customer, 3).score == 11.5
        session.delete(session.get(Order, (ids[0], 2)))
        session.execute(sa.delete(Order).where(Order.customer == 3))
        session.commit()
        left = session.scalars(sa.select(Order.customer).order_by(Order.customer)).all()
        assert left == [1, 1, 1, 2, 2, 2], left


# ---------------------------------------------------------------------------------------------------------------
# 3. GUI clients' catalog queries

def rows_are(expected):
    def check(names, rows):
        assert rows == expected, rows
    return check


def has_row(*cells):
    """Some row starts with `cells`."""
    def check(names, rows):
        assert any(r[:len(cells)] == cells for r in rows), rows
    return check


def no_rows(names, rows):
    assert rows == (), rows


def one_row(names, rows):
    assert len(rows) == 1, rows


def columns_include(*wanted):
    def check(names, rows):
        assert all(w in names for w in wanted), names
    return check


def all_of(*checks):
    def check(names, rows):
        for c in checks:
            c(names, rows)
    return check


def column(name, expected):
    """The column `name` holds exactly `expected`, in order."""
    def check(names, rows):
        i = names.index(name)
        assert tuple(r[i] for r in rows) == tuple(expected), (name, [r[i] for r in rows])
    return check


CONNECTOR_J_INIT = (
    "/* mysql-connector-j-8.4.0 (Revision: 1c3f5c149e0bfe31c7fbeb24e2d260cd890972c4) */SELECT "
    " @@session.auto_increment_increment AS auto_increment_increment, @@character_set_client AS character_set_client,"
    " @@character_set_connection AS character_set_connection, @@character_set_results AS character_set_results,"
    " @@character_set_server AS character_set_server, @@collation_server AS collation_server,"
    " @@collation_connection AS collation_connection, @@init_connect AS init_connect,"
    " @@interactive_timeout AS interactive_timeout, @@license AS license,"
    " @@lower_case_table_names AS lower_case_table_names, @@max_allowed_packet AS max_allowed_packet,"
    " @@net_write_timeout AS net_write_timeout, @@performance_schema AS performance_schema,"
    " @@query_cache_size AS query_cache_size, @@query_cache_type AS query_cache_type, @@sql_mode AS sql_mode,"
    " @@system_time_zone AS system_time_zone, @@time_zone AS time_zone,"
    " @@transaction_isolation AS transaction_isolation, @@wait_timeout AS wait_timeout"
)

# Connector/J's DatabaseMetaData (what DBeaver's generic paths call): getPrimaryKeys, getIndexInfo, getImportedKeys.
CONNECTOR_J_PRIMARY_KEYS = (
    "SELECT TABLE_SCHEMA AS TABLE_CAT, NULL AS TABLE_SCHEM, TABLE_NAME, COLUMN_NAME, SEQ_IN_INDEX AS KEY_SEQ,"
    " 'PRIMARY' AS PK_NAME FROM INFORMATION_SCHEMA.STATISTICS WHERE TABLE_SCHEMA = 'shop' AND TABLE_NAME = 'orders'"
    " AND INDEX_NAME='PRIMARY' ORDER BY TABLE_SCHEMA, TABLE_NAME, COLUMN_NAME, SEQ_IN_INDEX"
)
CONNECTOR_J_INDEX_INFO = (
    "SELECT TABLE_SCHEMA AS TABLE_CAT, NULL AS TABLE_SCHEM, TABLE_NAME, NON_UNIQUE, NULL AS INDEX_QUALIFIER,"
    " INDEX_NAME, 3 AS TYPE, SEQ_IN_INDEX AS ORDINAL_POSITION, COLUMN_NAME,COLLATION AS ASC_OR_DESC, CARDINALITY,"
    " 0 AS PAGES, NULL AS FILTER_CONDITION FROM INFORMATION_SCHEMA.STATISTICS WHERE TABLE_SCHEMA = 'shop' AND"
    " TABLE_NAME = 'orders' ORDER BY NON_UNIQUE, INDEX_NAME, SEQ_IN_INDEX"
)
_RULE = ("CASE WHEN R.{0}='CASCADE' THEN 0 WHEN R.{0}='SET NULL' THEN 2 WHEN R.{0}='SET DEFAULT' THEN 4"
         " WHEN R.{0}='RESTRICT' THEN 1 WHEN R.{0}='NO ACTION' THEN 1 ELSE 1 END ")
CONNECTOR_J_IMPORTED_KEYS = (
    "SELECT DISTINCT A.REFERENCED_TABLE_SCHEMA AS PKTABLE_CAT,NULL AS PKTABLE_SCHEM,"
    " A.REFERENCED_TABLE_NAME AS PKTABLE_NAME, A.REFERENCED_COLUMN_NAME AS PKCOLUMN_NAME,"
    " A.TABLE_SCHEMA AS FKTABLE_CAT, NULL AS FKTABLE_SCHEM,"
    " A.TABLE_NAME AS FKTABLE_NAME, A.COLUMN_NAME AS FKCOLUMN_NAME, A.ORDINAL_POSITION AS KEY_SEQ,"
    + _RULE.format("UPDATE_RULE") + " AS UPDATE_RULE," + _RULE.format("DELETE_RULE")
    + " AS DELETE_RULE, A.CONSTRAINT_NAME AS FK_NAME, R.UNIQUE_CONSTRAINT_NAME AS PK_NAME,7"
    " AS DEFERRABILITY FROM INFORMATION_SCHEMA.KEY_COLUMN_USAGE A"
    " JOIN INFORMATION_SCHEMA.TABLE_CONSTRAINTS B USING (CONSTRAINT_SCHEMA, CONSTRAINT_NAME, TABLE_NAME) "
    "JOIN INFORMATION_SCHEMA.REFERENTIAL_CONSTRAINTS R ON (R.CONSTRAINT_NAME = B.CONSTRAINT_NAME "
    "AND R.TABLE_NAME = B.TABLE_NAME AND R.CONSTRAINT_SCHEMA = B.TABLE_SCHEMA) "
    "WHERE B.CONSTRAINT_TYPE = 'FOREIGN KEY' AND A.TABLE_SCHEMA = 'shop' AND A.TABLE_NAME='orders'"
    " AND A.REFERENCED_TABLE_SCHEMA IS NOT NULL ORDER BY A.REFERENCED_TABLE_SCHEMA, A.REFERENCED_TABLE_NAME,"
    " A.ORDINAL_POSITION"
)

# What DBeaver 24 sends (org.jkiss.dbeaver.ext.mysql: MySQLDataSource, MySQLCatalog, MySQLTable, MySQLSessionManager)
# through Connector/J, in the order it sends them when it connects and a user opens the database `shop` and its
# table `orders` (columns, indexes, constraints, foreign keys, partitions, DDL, data) and the session manager.
DBEAVER = [
    (CONNECTOR_J_INIT, all_of(one_row, column("lower_case_table_names", [0]),
                              column("transaction_isolation", ["READ-COMMITTED"]))),
    ("SET NAMES utf8mb4", None),
    ("SET character_set_results = NULL", None),
    ("SET autocommit=1", None),
    ("SELECT @@session.transaction_read_only", rows_are(((0,),))),
    ("SHOW ENGINES", all_of(columns_include("Engine", "Support", "Comment", "Transactions", "XA", "Savepoints"),
                            has_row("Canopy"))),
    ("SHOW CHARSET", all_of(columns_include("Charset", "Description", "Default collation", "Maxlen"),
                            has_row("utf8mb4"))),
    ("SHOW COLLATION", all_of(columns_include("Collation", "Charset", "Id", "Default"),
                              has_row("utf8mb4_bin", "utf8mb4"))),
    ("SELECT @@GLOBAL.character_set_server,@@GLOBAL.collation_server", rows_are((("utf8mb4", "utf8mb4_bin"),))),
    ("SHOW PLUGINS", columns_include("Name", "Status", "Type", "Library", "License")),
    ("SHOW VARIABLES LIKE 'lower_case_table_names'", rows_are((("lower_case_table_names", "0"),))),
    ("show databases", all_of(has_row("information_schema"), has_row("shop"))),
    ("SELECT * FROM information_schema.TABLES t\nWHERE\n\tt.TABLE_SCHEMA = 'information_schema'\n"
     "\tAND t.TABLE_NAME = 'CHECK_CONSTRAINTS'", no_rows),
    ("SELECT DATABASE()", one_row),
    ("use `shop`", None),
    ("SELECT * FROM information_schema.SCHEMATA WHERE SCHEMA_NAME='shop'",
     all_of(one_row, column("DEFAULT_CHARACTER_SET_NAME", ["utf8mb4"]))),
    ("SELECT SUM((DATA_LENGTH+INDEX_LENGTH))\nFROM INFORMATION_SCHEMA.TABLES \nWHERE TABLE_SCHEMA='shop'", one_row),
    ("SELECT table_schema, SUM(data_length + index_length) \nFROM information_schema.tables \nGROUP BY table_schema",
     has_row("shop")),
    ("SHOW FULL TABLES FROM `shop`", all_of(columns_include("Tables_in_shop", "Table_type"),
                                            rows_are((("customers", "BASE TABLE"), ("orders", "BASE TABLE"))))),
    ("SHOW FULL TABLES FROM `information_schema`", all_of(has_row("COLUMNS", "SYSTEM VIEW"),
                                                          has_row("TABLES", "SYSTEM VIEW"))),
    ("SHOW TABLE STATUS FROM `shop`", all_of(column("Name", ["customers", "orders"]),
                                             column("Engine", ["Canopy", "Canopy"]))),
    ("SHOW TABLE STATUS FROM `shop` LIKE 'orders'", column("Name", ["orders"])),
    ("SHOW CREATE DATABASE `shop`", has_row("shop")),
    ("SELECT * FROM information_schema.COLUMNS WHERE TABLE_SCHEMA='shop' AND TABLE_NAME='orders'"
     " ORDER BY ORDINAL_POSITION",
     all_of(column("COLUMN_NAME", ["id", "customer", "amount", "note", "placed"]),
            column("DATA_TYPE", ["bigint", "int", "decimal", "varchar", "datetime"]),
            column("IS_NULLABLE", ["NO", "NO", "YES", "YES", "YES"]))),
    ("SELECT * FROM information_schema.COLUMNS WHERE TABLE_SCHEMA='shop' ORDER BY ORDINAL_POSITION",
     column("TABLE_NAME", ["customers", "orders", "customers", "orders", "orders", "orders", "orders"])),
    ("SELECT * FROM information_schema.STATISTICS WHERE TABLE_SCHEMA='shop' AND TABLE_NAME='orders'"
     " ORDER BY TABLE_NAME,INDEX_NAME,SEQ_IN_INDEX",
     # Text sorts bytewise (utf8mb4_bin, docs/sql.md): upper case first.
     all_of(column("INDEX_NAME", ["PRIMARY", "PRIMARY", "by_note"]),
            column("COLUMN_NAME", ["id", "customer", "note"]), column("NON_UNIQUE", [0, 0, 1]))),
    ("SELECT kc.CONSTRAINT_NAME,kc.TABLE_NAME,kc.COLUMN_NAME,kc.ORDINAL_POSITION\n"
     "FROM INFORMATION_SCHEMA.KEY_COLUMN_USAGE kc WHERE kc.TABLE_SCHEMA='shop' AND kc.REFERENCED_TABLE_NAME IS NULL"
     " AND kc.TABLE_NAME='orders'\nORDER BY kc.CONSTRAINT_NAME,kc.ORDINAL_POSITION",
     rows_are((("PRIMARY", "orders", "id", 1), ("PRIMARY", "orders", "customer", 2)))),
    ("SELECT kc.CONSTRAINT_NAME,kc.TABLE_NAME,kc.COLUMN_NAME,kc.ORDINAL_POSITION\n"
     "FROM INFORMATION_SCHEMA.KEY_COLUMN_USAGE kc WHERE kc.TABLE_SCHEMA='shop' AND kc.REFERENCED_TABLE_NAME IS NULL"
     "\nORDER BY kc.CONSTRAINT_NAME,kc.ORDINAL_POSITION",
     column("COLUMN_NAME", ["id", "id", "customer", "name"])),
    (CONNECTOR_J_PRIMARY_KEYS, column("COLUMN_NAME", ["customer", "id"])),
    (CONNECTOR_J_INDEX_INFO, all_of(column("INDEX_NAME", ["PRIMARY", "PRIMARY", "by_note"]),
                                    column("ASC_OR_DESC", ["A", "A", "A"]))),
    (CONNECTOR_J_IMPORTED_KEYS, no_rows),
    ("SELECT * FROM information_schema.PARTITIONS WHERE TABLE_SCHEMA='shop' AND TABLE_NAME='orders'"
     "  ORDER BY PARTITION_ORDINAL_POSITION,SUBPARTITION_ORDINAL_POSITION",
     all_of(one_row, column("PARTITION_NAME", [None]))),
    ("SELECT * FROM information_schema.ROUTINES\nWHERE ROUTINE_SCHEMA='shop' AND ROUTINE_TYPE"
     " IN ('PROCEDURE','FUNCTION')\nORDER BY ROUTINE_NAME", all_of(no_rows, columns_include("ROUTINE_DEFINITION"))),
    ("SELECT * FROM INFORMATION_SCHEMA.TRIGGERS\nWHERE TRIGGER_SCHEMA = 'shop'",
     all_of(no_rows, columns_include("EVENT_OBJECT_TABLE"))),
    ("SELECT * FROM information_schema.EVENTS WHERE EVENT_SCHEMA='shop'", no_rows),
    ("SELECT * FROM information_schema.VIEWS WHERE TABLE_SCHEMA='shop'", no_rows),
    ("SHOW CREATE TABLE `shop`.`orders`", lambda n, r: None if "SHARD KEY" in r[0][1] else r),
    ("SELECT * FROM `shop`.`orders` LIMIT 0, 200", lambda n, r: None if sorted(x[0] for x in r) == [1, 2, 3] else r),
    ("SELECT COUNT(*) FROM `shop`.`orders`", rows_are(((3,),))),
    ("SHOW FULL PROCESSLIST", all_of(columns_include("Id", "User", "Host", "db", "Command", "Time", "State", "Info"),
                                     has_row())),
    ("SELECT * FROM information_schema.PROCESSLIST", columns_include("ID", "USER", "INFO")),
    ("SHOW STATUS", all_of(columns_include("Variable_name", "Value"), has_row("Uptime"))),
    ("SHOW GLOBAL STATUS", lambda n, r: None if any(row[0] == "Uptime" for row in r) else r),
    ("SHOW VARIABLES", lambda n, r: None if any(row[0] == "version" for row in r) else r),
    ("SHOW GLOBAL VARIABLES", lambda n, r: None if any(row[0] == "max_allowed_packet" for row in r) else r),
    ("SHOW GRANTS", one_row),
    ("SHOW PRIVILEGES", all_of(columns_include("Privilege", "Context", "Comment"), has_row("Select"))),
]

# What MySQL Workbench 8.0 sends (backend/wbprivate/sqlide: the connection startup script, the connection info
# panel, the live schema tree and the object editors), in the same situation.
WORKBENCH = [
    ("SET CHARACTER SET utf8", None),
    ("SET NAMES utf8", None),
    ("SET SQL_SAFE_UPDATES=1", None),
    ("SELECT CONNECTION_ID()", lambda n, r: None if isinstance(r[0][0], int) and r[0][0] > 0 else r),
    ("SELECT current_user()", rows_are((("root@%",),))),
    ("SHOW SESSION STATUS LIKE 'Ssl_cipher'", columns_include("Variable_name", "Value")),
    ("SHOW SESSION VARIABLES LIKE 'lower_case_table_names'", rows_are((("lower_case_table_names", "0"),))),
    ("SHOW SESSION VARIABLES LIKE 'sql_mode'", has_row("sql_mode")),
    ("SELECT @@SESSION.sql_mode", one_row),
    ("SELECT @@version_compile_os", rows_are((("Linux",),))),
    ("SELECT @@lower_case_table_names", rows_are(((0,),))),
    ("SHOW VARIABLES LIKE 'version'", lambda n, r: None if r[0][1].startswith("5.7") else r),
    ("SHOW DATABASES", all_of(has_row("information_schema"), has_row("shop"))),
    ("SHOW DATABASES LIKE 'shop'", rows_are((("shop",),))),
    ("SHOW FULL TABLES FROM `shop`", rows_are((("customers", "BASE TABLE"), ("orders", "BASE TABLE")))),
    ("SHOW FULL TABLES FROM `shop` LIKE 'orders'", rows_are((("orders", "BASE TABLE"),))),
    ("SHOW FULL TABLES FROM `shop` WHERE `Tables_in_shop` = 'orders' AND Table_type != 'VIEW'",
     rows_are((("orders", "BASE TABLE"),))),
    ("SHOW FULL TABLES FROM `shop` WHERE `Tables_in_shop` = 'orders' AND Table_type = 'VIEW'", no_rows),
    ("SHOW PROCEDURE STATUS WHERE Db='shop'", all_of(no_rows, columns_include("Db", "Name", "Type"))),
    ("SHOW FUNCTION STATUS WHERE Db='shop'", no_rows),
    ("SHOW FULL COLUMNS FROM `shop`.`orders`",
     all_of(column("Field", ["id", "customer", "amount", "note", "placed"]),
            column("Type", ["bigint", "int", "decimal(10,2)", "varchar(40)", "datetime"]),
            column("Null", ["NO", "NO", "YES", "YES", "YES"]), column("Key", ["PRI", "PRI", "", "MUL", ""]))),
    ("SHOW INDEXES FROM `shop`.`orders`", all_of(column("Key_name", ["PRIMARY", "PRIMARY", "by_note"]),
                                                 column("Column_name", ["id", "customer", "note"]))),
    ("SHOW TRIGGERS FROM `shop` LIKE 'orders'", no_rows),
    ("SHOW TRIGGERS FROM `shop` WHERE `Table` = 'orders'", no_rows),
    ("SHOW CREATE SCHEMA `shop`", has_row("shop")),
    ("SHOW CREATE TABLE `shop`.`orders`", has_row("orders")),
    ("SHOW CREATE TABLE `shop`.`customers`", lambda n, r: None if "REFERENCE" in r[0][1] else r),
    ("SELECT DEFINER, SECURITY_TYPE, VIEW_DEFINITION FROM INFORMATION_SCHEMA.VIEWS WHERE TABLE_SCHEMA = 'shop'"
     " AND TABLE_NAME = 'orders'", no_rows),
    ("SELECT COLUMN_TYPE FROM INFORMATION_SCHEMA.COLUMNS WHERE table_schema = 'shop' and table_name = 'orders'"
     " and column_name = 'amount'", rows_are((("decimal(10,2)",),))),
    ("SHOW CHARACTER SET", has_row("utf8mb4")),
    ("SHOW COLLATION", has_row("utf8mb4_bin")),
    ("SHOW ENGINES", has_row("Canopy")),
    ("USE `shop`", None),
    ("SHOW TABLE STATUS", column("Name", ["customers", "orders"])),
    ("SHOW WARNINGS", columns_include("Level", "Code", "Message")),
]


def check_gui_queries(port):
    """Each query DBeaver and MySQL Workbench send, over a fresh connection per tool (as each tool opens its own),
    must succeed and answer what the list says."""
    setup = connect(port)
    with setup.cursor() as c:
        c.execute("CREATE DATABASE shop PARTITIONS 4")
        c.execute("CREATE TABLE shop.orders (id BIGINT NOT NULL AUTO_INCREMENT, customer INT NOT NULL, "
                  "amount DECIMAL(10,2) DEFAULT '0.00', note VARCHAR(40), placed DATETIME, "
                  "PRIMARY KEY (id, customer), KEY by_note (note), SHARD KEY (customer))")
        c.execute("CREATE REFERENCE TABLE shop.customers (id INT PRIMARY KEY, name VARCHAR(30) NOT NULL, "
                  "UNIQUE KEY by_name (name))")
        c.execute("INSERT INTO shop.orders (id, customer, amount, note) VALUES (1, 1, 2.5, 'a'), (2, 2, 3, NULL), "
                  "(3, 1, NULL, 'c')")
        c.execute("INSERT INTO shop.customers VALUES (1, 'ann'), (2, 'bob')")
    setup.close()
    failures = []
    for tool, queries in [("DBeaver", DBEAVER), ("MySQL Workbench", WORKBENCH)]:
        conn = connect(port, autocommit=True)
        for sql, check in queries:
            try:
                names, rows = query(conn, sql)
                if check is not None:
                    check(names, rows)
            except Exception as e:  # noqa: BLE001 - every failing query is reported, then the check fails
                failures.append(f"{tool}: {sql!r}: {type(e).__name__}: {e}")
        conn.close()
    for f in failures:
        print("  " + f)
    total = len(DBEAVER) + len(WORKBENCH)
    assert not failures, f"{len(failures)} of {total} GUI queries failed"
    print(f"  {total} GUI client queries answered ({len(DBEAVER)} DBeaver, {len(WORKBENCH)} MySQL Workbench)")


# ---------------------------------------------------------------------------------------------------------------
# 4. Node.js mysql2

def check_node(port):
    """ci/node/crud.js with the mysql2 version pinned in ci/node/package-lock.json (installed by .ci/run)."""
    node_dir = os.path.join(HERE, "node")
    assert os.path.isdir(os.path.join(node_dir, "node_modules", "mysql2")), "run `npm ci` in ci/node first"
    out = run(["node", "crud.js", str(port)], cwd=node_dir, timeout_s=120)
    print("\n".join("  " + line for line in out.stdout.strip().splitlines()))
    assert out.returncode == 0, (out.stdout, out.stderr)


# ---------------------------------------------------------------------------------------------------------------
# 5. A table dumped from MariaDB

class MariaDB:
    """A throwaway MariaDB server on a free loopback port, its data directory in a temporary directory."""

    def __init__(self):
        self.root = tempfile.mkdtemp(prefix="canopy-mariadb-")
        self.port = free_port()
        self.proc = None

    def __enter__(self):
        try:
            data = os.path.join(self.root, "data")
            install = run(["mariadb-install-db", "--no-defaults", f"--datadir={data}", "--user=root",
                           "--auth-root-authentication-method=normal", "--skip-test-db"], timeout_s=120)
            assert install.returncode == 0, install.stderr
            self.log = open(os.path.join(self.root, "mariadb.log"), "w")
            mariadbd = shutil.which("mariadbd") or "/usr/sbin/mariadbd"
            self.proc = subprocess.Popen(
                [mariadbd, "--no-defaults", f"--datadir={data}", "--user=root", "--bind-address=127.0.0.1",
                 f"--port={self.port}", f"--socket={os.path.join(self.root, 'mariadb.sock')}",
                 f"--pid-file={os.path.join(self.root, 'mariadb.pid')}", "--skip-grant-tables",
                 "--innodb-buffer-pool-size=32M", "--skip-log-bin"],
                stdout=self.log, stderr=self.log)
            connect(self.port, deadline_s=60).close()
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc):
        if self.proc is not None:
            stop([self.proc])
            self.log.close()
        shutil.rmtree(self.root, ignore_errors=True)
        return False


MARIADB_TABLE = """
CREATE DATABASE src;
USE src;
CREATE TABLE products (
  id INT NOT NULL AUTO_INCREMENT,
  sku VARCHAR(20) NOT NULL,
  name VARCHAR(100) DEFAULT NULL,
  price DECIMAL(10,2) NOT NULL DEFAULT 0.00,
  weight DOUBLE,
  stock SMALLINT UNSIGNED NOT NULL DEFAULT 0,
  added DATETIME,
  born DATE,
  notes TEXT,
  payload BLOB,
  PRIMARY KEY (id),
  KEY sku (sku),
  KEY by_name (name)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_general_ci;
INSERT INTO products (sku, name, price, weight, stock, added, born, notes, payload) VALUES
  ('A-1', 'plain', 1.50, 0.25, 3, '2024-01-02 03:04:05', '2024-01-02', 'line one', x'00ff7f'),
  ('B-2', 'it''s "quoted"', 10.00, NULL, 0, NULL, NULL, 'back\\\\slash and\\ttab', NULL),
  ('C-3', NULL, 0.05, -1.5e10, 65535, '1999-12-31 23:59:59', '1970-01-01', '', x''),
  ('D-4', 'ünïcødé ✓', 99999999.99, 3.141592653589793, 7, '2038-01-19 03:14:07', '2000-02-29', NULL, x'0a0d09');
"""
MARIADB_COMPARE = "SELECT id, sku, name, price, weight, stock, added, born, notes, payload FROM products ORDER BY id"


def as_canopy_sends(value):
    """A MariaDB value as Canopy's result columns carry it (docs/sql.md, "Result column types"): DECIMAL as a DOUBLE,
    DATE and DATETIME as their ISO-8601 text. Everything else is compared as it is."""
    if isinstance(value, decimal.Decimal):
        return float(value)
    if isinstance(value, datetime.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, datetime.date):
        return value.isoformat()
    return value


def check_mariadb_dump(port):
    """A table made on a real MariaDB server (InnoDB, utf8mb4, UNSIGNED, AUTO_INCREMENT, a unique and a plain key,
    quotes, backslashes, tabs, NULLs, non-ASCII text, dates, decimals, blobs), dumped with mariadb-dump and loaded
    with the mariadb client into a Canopy database: the same rows (as values through PyMySQL) and the same keys."""
    with MariaDB() as server:
        code, out, err = mariadb(server.port, MARIADB_TABLE)
        assert code == 0, err
        source = connect(server.port, database="src")
        _, expected = query(source, MARIADB_COMPARE)
        source.close()
        dump = subprocess.run(["mariadb-dump", "-h", "127.0.0.1", "-P", str(server.port), "-u", "root", "src"],
                              capture_output=True, timeout=120)
        assert dump.returncode == 0, dump.stderr
    code, out, err = mariadb(port, "CREATE DATABASE fromdump PARTITIONS 4")
    assert code == 0, err
    load = subprocess.run(["mariadb", "-h", "127.0.0.1", "-P", str(port), "-u", "root", "fromdump"],
                          input=dump.stdout, capture_output=True, timeout=120)
    assert load.returncode == 0, load.stderr.decode()
    conn = connect(port, database="fromdump")
    _, got = query(conn, MARIADB_COMPARE)
    assert len(got) == len(expected) == 4, (got, expected)
    for g, e in zip(got, expected):
        assert g == tuple(as_canopy_sends(v) for v in e), ("row differs", g, e)
    _, keys = query(conn, "SELECT INDEX_NAME, COLUMN_NAME, NON_UNIQUE FROM information_schema.STATISTICS "
                          "WHERE TABLE_SCHEMA = 'fromdump' AND TABLE_NAME = 'products' ORDER BY INDEX_NAME")
    assert keys == (("PRIMARY", "id", 0), ("by_name", "name", 1), ("sku", "sku", 1)), keys
    with conn.cursor() as c:
        # The dump's AUTO_INCREMENT=5 goes on after the loaded ids.
        c.execute("INSERT INTO products (sku) VALUES ('E-5')")
        assert c.lastrowid == 5, c.lastrowid
    conn.close()
    # A UNIQUE key without the shard key cannot be enforced per partition: the same table with `UNIQUE KEY sku`
    # is refused with the error docs/sql.md names, not loaded without the constraint.
    unique = dump.stdout.replace(b"  KEY `sku` (`sku`),", b"  UNIQUE KEY `sku` (`sku`),")
    assert unique != dump.stdout
    code, out, err = mariadb(port, "CREATE DATABASE fromdump2 PARTITIONS 2")
    assert code == 0, err
    load = subprocess.run(["mariadb", "-h", "127.0.0.1", "-P", str(port), "-u", "root", "fromdump2"],
                          input=unique, capture_output=True, timeout=120)
    assert load.returncode != 0 and b"must contain all columns of the shard key" in load.stderr, load.stderr


# ---------------------------------------------------------------------------------------------------------------

CHECKS = [
    ("mariadb-slap", check_slap),
    ("SQLAlchemy reflection and ORM", check_sqlalchemy),
    ("DBeaver and MySQL Workbench catalog queries", check_gui_queries),
    ("Node.js mysql2 CRUD", check_node),
    ("mariadb-dump from MariaDB into Canopy", check_mariadb_dump),
]


def main():
    passed, failed = 0, 0
    with Cluster(sys.argv[1], "tools") as cluster:
        for name, check in CHECKS:
            started = time.time()
            try:
                check(cluster.port)
                passed += 1
                print(f"{name}: ok ({time.time() - started:.1f} s)")
            except Exception:  # noqa: BLE001 - reported, counted, and the run fails at the end
                failed += 1
                print(f"{name}: FAILED ({time.time() - started:.1f} s)")
                traceback.print_exc(file=sys.stdout)
    print(f"tools: {passed} passed, {failed} failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
