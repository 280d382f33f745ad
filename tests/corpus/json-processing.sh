cd /workspace
python3 - "$SEED" <<'PY'
import json, random, sys
rnd = random.Random(int(sys.argv[1]))
items = [{"id": i, "tags": rnd.sample(["a", "b", "c", "d"], 2), "price": round(rnd.random() * 100, 2)} for i in range(rnd.randint(50, 800))]
json.dump({"items": items}, open("items.json", "w"))
PY
jq '.items | length' items.json
jq -c '[.items[] | select(.price > 50) | .id] | length' items.json
jq '[.items[].tags[]] | group_by(.) | map({tag: .[0], n: length})' items.json > tags.json
python3 -c 'import json; print(sum(t["n"] for t in json.load(open("tags.json"))))'
