cd /workspace
n=$(awk -v s="$SEED" 'BEGIN{srand(s); print 5 + int(rand()*30)}')
mkdir -p project/docs project/src
i=0
while [ $i -lt $n ]; do
  head -c $((i * 97 + 50)) /dev/zero | tr '\0' 'x' > project/src/file$i.txt
  i=$((i+1))
done
echo "readme $SEED" > project/docs/README
tar czf project.tar.gz project
tar tzf project.tar.gz | wc -l
xz -k -1 project/docs/README
mkdir -p restore && tar xzf project.tar.gz -C restore
gzip -c project/docs/README > readme.gz && gzip -t readme.gz
diff -r project/src restore/project/src && echo same
