cd /workspace
n=$(awk -v s="$SEED" 'BEGIN{srand(s); print 2 + int(rand()*4)}')
mkdir -p src
i=0; objs=""
while [ $i -lt $n ]; do
  printf 'int f%d(int x) { return x * %d + %d; }\n' $i $i $n > src/f$i.c
  objs="$objs src/f$i.o"; i=$((i+1))
done
{ echo '#include <stdio.h>'; i=0; while [ $i -lt $n ]; do echo "int f$i(int);"; i=$((i+1)); done
  echo 'int main(void) { int s = 0;'; i=0; while [ $i -lt $n ]; do echo "s += f$i($i);"; i=$((i+1)); done
  printf '%s\n' 'printf("%d\n", s); return 0; }'; } > src/main.c
printf 'app:%s src/main.o\n\tcc -o app %s src/main.o\n%%.o: %%.c\n\tcc -O1 -c -o $@ $<\n' "$objs" "$objs" > Makefile
make -s -j2 && ./app
