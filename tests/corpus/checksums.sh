cd /workspace
n=$(awk -v s="$SEED" 'BEGIN{srand(s); print 5 + int(rand()*40)}')
mkdir -p blobs
i=0
while [ $i -lt $n ]; do head -c $((i * 313 + 1)) /dev/urandom > blobs/b$i; i=$((i+1)); done
find blobs -type f | sort | xargs sha256sum > SHA256SUMS
sha256sum -c --quiet SHA256SUMS && echo verified
md5sum blobs/b0 | cut -c1-8
du -sk blobs | cut -f1
