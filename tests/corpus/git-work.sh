cd /workspace
export GIT_CONFIG_NOSYSTEM=1 HOME=/workspace
git init -q repo && cd repo
git config user.email agent@example.com && git config user.name agent
n=$(awk -v s="$SEED" 'BEGIN{srand(s); print 2 + int(rand()*5)}')
i=0
while [ $i -lt $n ]; do
  echo "line $i of $SEED" >> notes.txt
  printf 'def f%d():\n    return %d\n' $i $i > mod$i.py
  git add -A && git commit -qm "change $i"
  i=$((i+1))
done
git checkout -qb feature && echo feature >> notes.txt && git commit -qam feature
git checkout -q - && git merge -q --no-edit feature
git log --oneline | wc -l && git diff HEAD~1 --stat >/dev/null
