cd /workspace
n=$(awk -v s="$SEED" 'BEGIN{srand(s); print 100 + int(rand()*900)}')
awk -v n=$n -v s="$SEED" 'BEGIN{srand(s); print "BEGIN; CREATE TABLE t(id INTEGER PRIMARY KEY, k TEXT, v REAL);"; for(i=0;i<n;i++) printf "INSERT INTO t(k, v) VALUES (\x27k%d\x27, %f);\n", int(rand()*20), rand()*100; print "COMMIT;"}' > load.sql
sqlite3 app.db < load.sql
sqlite3 app.db 'SELECT k, count(*), round(avg(v), 2) FROM t GROUP BY k ORDER BY 2 DESC LIMIT 3;'
sqlite3 app.db 'CREATE INDEX tk ON t(k); SELECT count(*) FROM t WHERE k = "k3";'
