# A burst of thousands of file operations on names the job uses anyway.
i=0; while [ $i -lt 1500 ]; do : > /workspace/storm_$i; i=$((i+1)); done
