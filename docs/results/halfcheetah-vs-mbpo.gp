# gnuplot docs/results/halfcheetah-vs-mbpo.gp   (from the repository root)
# twig's HalfCheetah-v4 runs (strict pacing, MBPO's settings) against MBPO's curve
set terminal pngcairo size 900,560 noenhanced
set output 'docs/results/halfcheetah-vs-mbpo.png'
set datafile separator whitespace
set key left top
set grid
set xlabel 'real environment steps'
set ylabel 'evaluation return'
set title 'HalfCheetah: twig (seeds 1, 2) against MBPO (5 seeds, mean +- std)'
plot 'docs/results/mbpo-halfcheetah.txt' using 1:($2-$3):($2+$3) with filledcurves fs transparent solid 0.2 lc rgb '#888888' title 'MBPO +- std', \
     '' using 1:2 with lines lw 2 lc rgb '#444444' title 'MBPO mean', \
     '< tail -n +2 docs/results/halfcheetah-seed1.csv | tr , " "' using 1:3 with linespoints lw 2 pt 7 ps 0.6 lc rgb '#1f77b4' title 'twig seed 1', \
     '< tail -n +2 docs/results/halfcheetah-seed2.csv | tr , " "' using 1:3 with linespoints lw 2 pt 5 ps 0.6 lc rgb '#ff7f0e' title 'twig seed 2', \
     '< tail -n +2 docs/results/halfcheetah-seed1-old-stopping.csv | tr , " "' using 1:3 with lines lw 1 dt 2 lc rgb '#1f77b4' title 'twig seed 1, earlier early stopping'
