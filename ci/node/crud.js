// A small CRUD program with Node's mysql2 driver against a running Canopy cluster (started by ci/tools.py): plain
// queries (COM_QUERY, values escaped by the driver) and prepared statements (COM_STMT_PREPARE/EXECUTE, values sent in
// the binary protocol), checking every answer. Exits non-zero on the first wrong answer.
//
// Usage: node crud.js MASTER_AGGREGATOR_PORT
'use strict';

const assert = require('node:assert/strict');
const mysql = require('mysql2/promise');

async function main() {
  const port = Number(process.argv[2]);
  const conn = await mysql.createConnection({ host: '127.0.0.1', port, user: 'root', password: '' });
  try {
    await crud(conn);
  } finally {
    await conn.end();
  }
}

async function crud(conn) {
  await conn.query('CREATE DATABASE nodecrud PARTITIONS 4');
  await conn.changeUser({ database: 'nodecrud' });
  const [[{ db }]] = await conn.query('SELECT DATABASE() AS db');
  assert.equal(db, 'nodecrud', 'COM_CHANGE_USER selects the database');
  await conn.query(
    'CREATE TABLE people (id INT PRIMARY KEY, name VARCHAR(40) NOT NULL, age INT, score DOUBLE, ' +
      'born DATE, photo BLOB, KEY by_name (name))',
  );
  await conn.query('CREATE TABLE events (id BIGINT AUTO_INCREMENT PRIMARY KEY, person INT, what TEXT)');
  console.log('schema: ok');

  // Create: plain multi-row INSERT with driver-side escaping, then prepared single-row INSERTs.
  const [plain] = await conn.query('INSERT INTO people (id, name, age, score) VALUES ?', [
    [
      [1, "O'Brien", 41, 1.5],
      [2, 'back\\slash "q"', null, -2.25],
    ],
  ]);
  assert.equal(plain.affectedRows, 2);
  for (let id = 3; id <= 20; id++) {
    const [res] = await conn.execute(
      'INSERT INTO people (id, name, age, score, born, photo) VALUES (?, ?, ?, ?, ?, ?)',
      [id, `person ${id}`, 20 + id, id / 4, '2000-01-' + String(id).padStart(2, '0'), Buffer.from([0, id, 255])],
    );
    assert.equal(res.affectedRows, 1);
  }
  const [ev] = await conn.execute('INSERT INTO events (person, what) VALUES (?, ?)', [3, 'joined']);
  assert.ok(ev.insertId > 0, 'AUTO_INCREMENT id in the OK packet');
  const [ev2] = await conn.execute('INSERT INTO events (person, what) VALUES (?, ?)', [4, 'joined']);
  assert.ok(ev2.insertId > ev.insertId, 'ids increase on one aggregator');
  console.log('create: ok');

  // Read: a prepared point select (types in the binary protocol), the same statement again with other values
  // (the server reuses its plan), a plain scatter with ORDER BY/LIMIT, an aggregate, a join.
  const point = 'SELECT id, name, age, score, born, photo FROM people WHERE id = ?';
  let [rows] = await conn.execute(point, [7]);
  assert.deepEqual(rows, [
    { id: 7, name: 'person 7', age: 27, score: 1.75, born: '2000-01-07', photo: Buffer.from([0, 7, 255]) },
  ]);
  [rows] = await conn.execute(point, [1]);
  assert.deepEqual(rows, [{ id: 1, name: "O'Brien", age: 41, score: 1.5, born: null, photo: null }]);
  [rows] = await conn.execute(point, ['2']);
  assert.equal(rows[0].name, 'back\\slash "q"', 'a text parameter for an INT key finds the row');
  assert.equal(rows[0].age, null);
  [rows] = await conn.execute(point, [999]);
  assert.deepEqual(rows, []);
  [rows] = await conn.query('SELECT id FROM people ORDER BY id DESC LIMIT 3');
  assert.deepEqual(rows.map((r) => r.id), [20, 19, 18]);
  [rows] = await conn.execute('SELECT COUNT(*) AS n, SUM(age) AS total, MAX(score) AS best FROM people WHERE age > ?', [30]);
  assert.deepEqual(rows, [{ n: 11, total: 41 + (31 + 40) * 10 / 2, best: 5 }]);
  [rows] = await conn.query(
    'SELECT p.name, e.what FROM events e JOIN people p ON p.id = e.person ORDER BY p.id',
  );
  assert.deepEqual(rows, [
    { name: 'person 3', what: 'joined' },
    { name: 'person 4', what: 'joined' },
  ]);
  [rows] = await conn.execute('SELECT name FROM people WHERE name LIKE ? ORDER BY id', ['person 1%']);
  assert.deepEqual(rows.map((r) => r.name), Array.from({ length: 10 }, (_, i) => `person ${i + 10}`));
  // Rows as arrays, and the column metadata the driver reads.
  const [arrays, fields] = await conn.query({ sql: 'SELECT id, name FROM people WHERE id = 3', rowsAsArray: true });
  assert.deepEqual(arrays, [[3, 'person 3']]);
  assert.deepEqual(fields.map((f) => f.name), ['id', 'name']);
  console.log('read: ok');

  // Update: prepared and plain, single partition and everywhere.
  const [up] = await conn.execute('UPDATE people SET age = age + ? WHERE id = ?', [1, 5]);
  assert.equal(up.affectedRows, 1);
  const [upAll] = await conn.query('UPDATE people SET score = score * 2 WHERE score < 0');
  assert.equal(upAll.affectedRows, 1);
  [rows] = await conn.query('SELECT age FROM people WHERE id = 5');
  assert.equal(rows[0].age, 26);
  [rows] = await conn.execute('SELECT score FROM people WHERE id = ?', [2]);
  assert.equal(rows[0].score, -4.5);
  console.log('update: ok');

  // Delete.
  const [del] = await conn.execute('DELETE FROM people WHERE id = ?', [20]);
  assert.equal(del.affectedRows, 1);
  const [delMany] = await conn.execute('DELETE FROM people WHERE age >= ?', [35]);
  assert.equal(delMany.affectedRows, 6);
  [rows] = await conn.query('SELECT COUNT(*) AS n FROM people');
  assert.equal(rows[0].n, 13);
  console.log('delete: ok');

  // Errors come back as MySQL errors with their codes, and the connection stays usable.
  await assert.rejects(conn.execute('INSERT INTO people (id, name) VALUES (?, ?)', [3, 'dup']), { errno: 1062 });
  await assert.rejects(conn.query('SELECT * FROM nope'), { errno: 1146 });
  await assert.rejects(conn.query('SELEC 1'), { errno: 1064 });
  [rows] = await conn.execute('SELECT ? + 1 AS two', [1]);
  assert.equal(Number(rows[0].two), 2);
  console.log('errors: ok');

  // A catalog query through a prepared statement, as JDBC tools with server-side prepares send it.
  [rows] = await conn.execute(
    'SELECT COLUMN_NAME, DATA_TYPE, IS_NULLABLE FROM information_schema.COLUMNS ' +
      'WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ? ORDER BY ORDINAL_POSITION',
    ['nodecrud', 'people'],
  );
  assert.deepEqual(
    rows.map((r) => [r.COLUMN_NAME, r.DATA_TYPE, r.IS_NULLABLE]),
    [
      ['id', 'int', 'NO'],
      ['name', 'varchar', 'NO'],
      ['age', 'int', 'YES'],
      ['score', 'double', 'YES'],
      ['born', 'date', 'YES'],
      ['photo', 'blob', 'YES'],
    ],
  );
  console.log('catalog: ok');

  // A pool, as web applications use the driver: concurrent prepared reads and writes.
  const pool = mysql.createPool({ host: '127.0.0.1', port: conn.config.port, user: 'root', database: 'nodecrud', connectionLimit: 4 });
  try {
    await Promise.all(
      Array.from({ length: 40 }, (_, i) => pool.execute('INSERT INTO events (person, what) VALUES (?, ?)', [i % 5, `e${i}`])),
    );
    const [[{ n }]] = await pool.query('SELECT COUNT(*) AS n FROM events');
    assert.equal(n, 42);
  } finally {
    await pool.end();
  }
  console.log('pool: ok');
  await conn.query('DROP DATABASE nodecrud');
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
