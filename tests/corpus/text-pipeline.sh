cd /workspace
awk -v s="$SEED" 'BEGIN{srand(s); n=500+int(rand()*3000); for(i=0;i<n;i++){ printf "%s %d %s\n", (rand()<0.1?"ERROR":"INFO"), int(rand()*100), substr("abcdefghij", 1+int(rand()*9), 3) } }' > app.log
grep -c ERROR app.log
grep INFO app.log | awk '{print $3}' | sort | uniq -c | sort -nr | head -5
sed -e 's/ERROR/E/' -e 's/INFO/I/' app.log > short.log
cut -d' ' -f2 short.log | sort -n | tail -1
wc -l app.log short.log
tr 'a-j' 'A-J' < short.log | head -3 > upper.txt
