cd /workspace
awk -v s="$SEED" 'BEGIN{srand(s); n=100+int(rand()*900); for(i=0;i<n;i++) printf "%d,%s,%.2f\n", i, (rand()<0.5?"north":"south"), rand()*1000}' > sales.csv
perl -F, -lane '$t{$F[1]} += $F[2]; END { printf "%s %.2f\n", $_, $t{$_} for sort keys %t }' sales.csv > report.txt
perl -ne 'print if /north/' sales.csv | wc -l
sort -t, -k3 -n -r sales.csv | head -3
