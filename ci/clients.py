#!/usr/bin/env python3
"""Exercises Canopy's MySQL front end with two real clients that the Rust test suite does not use: PyMySQL and the
`mariadb` command-line client (also logging in as created accounts with both authentication plugins). Starts a master aggregator and two leaves as real processes on free loopback ports,
forms the cluster, runs queries through both clients, checks the answers, and always stops every process.

Usage: clients.py PATH_TO_CANOPY_BINARY
"""
import subprocess
import sys

import pymysql

from cluster import Cluster, connect, mariadb


def check_default_transactions(port):
    """PyMySQL's default (DB-API) path: autocommit off, write, rollback(). Canopy commits every statement, so the
    rollback must fail rather than pretend, and the flags PyMySQL reads must say autocommit is off."""
    from pymysql.constants import SERVER_STATUS
    conn = connect(port, autocommit=False)
    try:
        assert not conn.get_autocommit(), "PyMySQL turned autocommit off and the server says so"
        with conn.cursor() as c:
            c.execute("CREATE TABLE test.tx (id INT PRIMARY KEY)")
            c.execute("COMMIT")
            c.execute("INSERT INTO test.tx VALUES (1)")
        assert conn.server_status & SERVER_STATUS.SERVER_STATUS_IN_TRANS, "the write opened a transaction"
        try:
            conn.rollback()
            raise AssertionError("ROLLBACK of a committed write must fail")
        except pymysql.err.MySQLError as e:
            assert e.args[0] == 1706, e
        with conn.cursor() as c:
            c.execute("SELECT COUNT(*) FROM test.tx")
            assert c.fetchone() == (1,), "the write stays, as the error says"
        conn.rollback()  # nothing written since: a true no-op
    finally:
        conn.close()


def check_accounts(port):
    """Accounts through the real clients: PyMySQL (which follows the server's offer, caching_sha2_password) and the
    mariadb CLI with either plugin as its default log in as created accounts (one identified WITH
    mysql_native_password), which hold only what was granted; a wrong password is 1045."""
    code, out, err = mariadb(port, "CREATE USER ci_app IDENTIFIED BY 'pw1'; "
                                   "CREATE USER ci_old IDENTIFIED WITH mysql_native_password BY 'pw2'; "
                                   "GRANT SELECT ON test.* TO ci_app;")
    assert code == 0, err
    for user, password in [("ci_app", "pw1"), ("ci_old", "pw2")]:
        conn = pymysql.connect(host="127.0.0.1", port=port, user=user, password=password)
        with conn.cursor() as c:
            c.execute("SELECT CURRENT_USER()")
            assert c.fetchone() == (f"{user}@%",), user
        conn.close()
    try:
        pymysql.connect(host="127.0.0.1", port=port, user="ci_app", password="bad")
        raise AssertionError("a wrong password must fail")
    except pymysql.err.OperationalError as e:
        assert e.args[0] == 1045, e
    for user, password in [("ci_app", "pw1"), ("ci_old", "pw2")]:
        for plugin in ["caching_sha2_password", "mysql_native_password"]:
            code, out, err = mariadb(port, "SELECT CURRENT_USER() AS u", "-u", user, f"-p{password}",
                                     f"--default-auth={plugin}")
            assert code == 0 and out.split() == ["u", f"{user}@%"], (user, plugin, out, err)
    code, out, err = mariadb(port, "SELECT COUNT(*) AS n FROM test.x", "-u", "ci_app", "-ppw1")
    assert code == 0 and out.split() == ["n", "100"], (out, err)
    code, out, err = mariadb(port, "INSERT INTO test.x VALUES (1000, 'no', 1)", "-u", "ci_app", "-ppw1")
    assert code != 0 and "1142" in err, (code, err)


def main():
    with Cluster(sys.argv[1], "clients") as cluster:
        port = cluster.port
        master = connect(port)
        with master.cursor() as c:
            c.execute("CREATE DATABASE test PARTITIONS 4")
            c.execute("CREATE TABLE test.x (id INT PRIMARY KEY, name VARCHAR(20), score DOUBLE)")
            # PyMySQL escapes parameters client-side; quotes and NULLs must survive.
            rows = [(i, f"it's #{i}", i * 1.5 if i % 7 else None) for i in range(1, 101)]
            c.executemany("INSERT INTO test.x VALUES (%s, %s, %s)", rows)
            c.execute("SELECT MIN(id), MAX(id), COUNT(*) FROM test.x")
            assert c.fetchone() == (1, 100, 100), "aggregate through PyMySQL"
            c.execute("SELECT name, score FROM test.x WHERE id = %s", (14,))
            assert c.fetchone() == ("it's #14", None), "point select with a quote and a NULL"
            c.execute("SELECT id, score FROM test.x WHERE id IN (2, 3) ORDER BY id")
            assert c.fetchall() == ((2, 3.0), (3, 4.5)), "types survive: int and double"
            c.execute("SELECT @@version_comment")
            assert c.fetchone()[0], "version comment"
            try:
                c.execute("SELECT * FROM test.nope")
                raise AssertionError("unknown table must fail")
            except pymysql.err.ProgrammingError as e:
                assert e.args[0] == 1146, e
        master.close()
        check_default_transactions(port)
        print("PyMySQL: ok")

        code, out, err = mariadb(port, "SELECT COUNT(*) AS n FROM test.x; SHOW LEAVES;")
        assert code == 0, err
        lines = out.strip().splitlines()
        assert lines[0] == "n" and lines[1] == "100", out
        assert sum(1 for line in lines if "\tonline\t" in line) == 2, out
        code, out, err = mariadb(port, "USE test; SELECT name FROM x WHERE id = 5;")
        assert code == 0 and out.strip().splitlines() == ["name", "it's #5"], (out, err)
        code, out, err = mariadb(port, "SELEC 1")
        assert code != 0 and "1064" in err, (code, err)
        print("mariadb CLI: ok")
        check_accounts(port)
        print("accounts (PyMySQL, mariadb CLI with both plugins): ok")
        dump_round_trip(port)
        print("mariadb-dump round trip: ok")


def dump_round_trip(port):
    """mariadb-dump of a Canopy database (distributed and reference tables, shard key, index, AUTO_INCREMENT,
    NULLs, quotes and backslashes, dates, decimals, raw blob bytes) reloads with the mariadb client into a new
    database with the same rows and the same table definitions, for the plain, --single-transaction, --routines and
    --hex-blob dumps."""
    setup = """
        CREATE DATABASE dumpsrc PARTITIONS 4;
        USE dumpsrc;
        CREATE TABLE orders (id BIGINT AUTO_INCREMENT, customer INT NOT NULL, amount DECIMAL(10,2) DEFAULT '0',
            note VARCHAR(40), at DATETIME, data BLOB, PRIMARY KEY (id, customer), KEY by_note (note),
            SHARD KEY (customer));
        CREATE REFERENCE TABLE customers (id INT PRIMARY KEY, name TEXT);
        INSERT INTO orders (customer, amount, note, at, data) VALUES
            (1, 2.50, 'it''s', '2024-01-02 03:04:05', x'00ff10'),
            (2, NULL, 'back\\\\slash "q"', NULL, NULL),
            (3, 7, NULL, '1999-12-31 23:59:59', x'');
        INSERT INTO customers VALUES (1, 'ann'), (2, NULL), (3, 'tab\there');
    """
    code, out, err = mariadb(port, setup)
    assert code == 0, err
    compare = ("SELECT id, customer, amount, note, at, HEX(data) FROM orders ORDER BY id; "
               "SELECT id, name FROM customers ORDER BY id; SHOW CREATE TABLE orders; SHOW CREATE TABLE customers;")
    code, expected, err = mariadb(port, "USE dumpsrc; " + compare)
    assert code == 0, err
    for i, options in enumerate([[], ["--single-transaction"], ["--routines"], ["--single-transaction", "--hex-blob"]]):
        dump = subprocess.run(
            ["mariadb-dump", "-h", "127.0.0.1", "-P", str(port), "-u", "root", *options, "dumpsrc"],
            capture_output=True, timeout=120,
        )
        assert dump.returncode == 0, (options, dump.stderr)
        target = f"dumpdst{i}"
        code, out, err = mariadb(port, f"CREATE DATABASE {target} PARTITIONS 3")
        assert code == 0, err
        load = subprocess.run(
            ["mariadb", "-h", "127.0.0.1", "-P", str(port), "-u", "root", target],
            input=dump.stdout, capture_output=True, timeout=120,
        )
        assert load.returncode == 0, (options, load.stderr)
        code, got, err = mariadb(port, f"USE {target}; " + compare)
        assert code == 0, err
        assert got == expected, (options, got, expected)


if __name__ == "__main__":
    main()
