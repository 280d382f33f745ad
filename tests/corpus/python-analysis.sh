cd /workspace
python3 - "$SEED" <<'PY'
import csv, json, random, statistics, sys
rnd = random.Random(int(sys.argv[1]))
rows = rnd.randint(200, 2000)
with open("data.csv", "w", newline="") as f:
    w = csv.writer(f)
    w.writerow(["id", "group", "value"])
    for i in range(rows):
        w.writerow([i, rnd.choice("abcde"), rnd.gauss(10, 3)])
groups = {}
with open("data.csv") as f:
    for r in csv.DictReader(f):
        groups.setdefault(r["group"], []).append(float(r["value"]))
summary = {g: {"n": len(v), "mean": statistics.mean(v), "stdev": statistics.pstdev(v)} for g, v in groups.items()}
with open("summary.json", "w") as f:
    json.dump(summary, f, indent=2)
print(len(summary), "groups")
PY
