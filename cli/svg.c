/* sluice CLI: SVG writers (a plan as a per-rank timeline, a replay as a line
 * chart). Plain SVG 1.1 with <title> tooltips; output depends only on the
 * inputs, so the same plan always draws the same bytes. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

/* Tableau 20 reordered so neighbouring group indices get distinct hues. */
static const char *const palette[] = {
	"#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1",
	"#ff9da7", "#9c755f", "#bab0ac", "#a0cbe8", "#ffbe7d", "#8cd17d", "#ff9d9a",
	"#86bcb6", "#f1ce63", "#d4a6c8", "#fabfd2", "#d7b5a6", "#79706e",
};
#define NPALETTE (sizeof(palette) / sizeof(palette[0]))

const char *cli_svg_color(size_t i)
{
	return palette[i % NPALETTE];
}

void cli_xml_escape(FILE *f, const char *s)
{
	for (; *s; s++) {
		switch (*s) {
		case '<': fputs("&lt;", f); break;
		case '>': fputs("&gt;", f); break;
		case '&': fputs("&amp;", f); break;
		case '"': fputs("&quot;", f); break;
		case '\'': fputs("&apos;", f); break;
		default:
			/* XML 1.0 forbids most control characters even escaped. */
			if ((unsigned char)*s < 0x20 && *s != '\t' && *s != '\n')
				fputc('?', f);
			else
				fputc(*s, f);
		}
	}
}

/* A tick spacing of 1, 2 or 5 times a power of ten giving about `target`
 * ticks over [0, range]. */
static double nice_step(double range, int target)
{
	if (!(range > 0) || !isfinite(range))
		return 1;
	double raw = range / target;
	double mag = pow(10, floor(log10(raw)));
	double r = raw / mag;
	double m = r < 1.5 ? 1 : r < 3 ? 2 : r < 7 ? 5 : 10;
	return m * mag;
}

/* Formats a tick value without trailing noise ("1500", "2.5", "0.05"). */
static void tick_label(double v, double step, char *buf, size_t size)
{
	int dec = step >= 1 ? 0 : (int)ceil(-log10(step) - 1e-9);
	if (dec > 6)
		dec = 6;
	snprintf(buf, size, "%.*f", dec, v);
}

static void svg_open(FILE *f, double w, double h)
{
	fprintf(f, "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
	fprintf(f,
	        "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"%.0f\" "
	        "height=\"%.0f\" viewBox=\"0 0 %.0f %.0f\" font-family=\"sans-serif\" "
	        "font-size=\"11\">\n",
	        w, h, w, h);
	fprintf(f, "<rect x=\"0\" y=\"0\" width=\"%.0f\" height=\"%.0f\" fill=\"#ffffff\"/>\n", w, h);
}

sl_err cli_svg_plan(FILE *f, const sl_plan_t *plan, const cli_timeline_t *tl)
{
	const double left = 70, right = 30, top = 64, bottom = 56, width = 1100;
	int32_t nr = plan->ranks;
	double rh = 600.0 / nr;
	if (rh > 18)
		rh = 18;
	if (rh < 3)
		rh = 3;
	double plot_w = width - left - right, plot_h = rh * nr;
	double height = top + plot_h + bottom;
	double tmax = tl->makespan_ms;
	if (isfinite(plan->ideal_ms) && plan->ideal_ms > tmax)
		tmax = plan->ideal_ms;
	if (!(tmax > 0))
		tmax = 1;
	double step = nice_step(tmax, 10);
	double tend = ceil(tmax / step - 1e-9) * step;
	double sx = plot_w / tend;
	char buf[512];

	svg_open(f, width, height);
	/* title and legend */
	fprintf(f, "<text x=\"%.0f\" y=\"20\" font-size=\"14\" font-weight=\"bold\">", left);
	snprintf(buf, sizeof(buf), "%s plan, %s, %d ranks (%d per node), %lld sequences",
	         plan->policy, plan->profile, plan->ranks, plan->ranks_per_node,
	         (long long)plan->nseqs);
	cli_xml_escape(f, buf);
	fprintf(f, "</text>\n");
	fprintf(f,
	        "<text x=\"%.0f\" y=\"38\">step %.1f ms, ideal %.1f ms, step/ideal %.3f; "
	        "%d slots, %lld group executions</text>\n",
	        left, plan->step_ms, plan->ideal_ms, plan->step_ms / plan->ideal_ms, plan->nslots,
	        (long long)plan->ngroups);
	{
		double lx = width - right - 370;
		fprintf(f, "<g class=\"legend\">\n");
		fprintf(f,
		        "<rect x=\"%.1f\" y=\"44\" width=\"14\" height=\"10\" fill=\"%s\"/>"
		        "<rect x=\"%.1f\" y=\"44\" width=\"14\" height=\"10\" fill=\"%s\"/>"
		        "<text x=\"%.1f\" y=\"53\">group execution (colour per group)</text>\n",
		        lx, cli_svg_color(0), lx + 14, cli_svg_color(1), lx + 32);
		fprintf(f,
		        "<rect x=\"%.1f\" y=\"44\" width=\"14\" height=\"10\" fill=\"#eeeeee\" "
		        "stroke=\"#cccccc\"/><text x=\"%.1f\" y=\"53\">idle</text>\n",
		        lx + 236, lx + 254);
		fprintf(f,
		        "<line x1=\"%.1f\" y1=\"49\" x2=\"%.1f\" y2=\"49\" stroke=\"#d62728\" "
		        "stroke-dasharray=\"4,3\"/><text x=\"%.1f\" y=\"53\">ideal</text>\n",
		        lx + 294, lx + 314, lx + 318);
		fprintf(f, "</g>\n");
	}

	/* grid and axis */
	fprintf(f, "<g class=\"axis\" stroke=\"#dddddd\">\n");
	for (double t = 0; t <= tend + step * 1e-6; t += step)
		fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\"/>\n", left + t * sx,
		        top, left + t * sx, top + plot_h + 4);
	fprintf(f, "</g>\n<g class=\"ticks\" text-anchor=\"middle\">\n");
	for (double t = 0; t <= tend + step * 1e-6; t += step) {
		tick_label(t, step, buf, sizeof(buf));
		fprintf(f, "<text x=\"%.2f\" y=\"%.2f\">%s</text>\n", left + t * sx, top + plot_h + 16,
		        buf);
	}
	fprintf(f, "</g>\n<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">time in step (ms)</text>\n",
	        left + plot_w / 2, top + plot_h + 36);
	fprintf(f,
	        "<text x=\"14\" y=\"%.2f\" text-anchor=\"middle\" "
	        "transform=\"rotate(-90 14 %.2f)\">rank</text>\n",
	        top + plot_h / 2, top + plot_h / 2);

	/* one row per rank: idle background, label */
	int label_every = rh >= 10 ? 1 : (int)ceil(10.0 / rh);
	fprintf(f, "<g class=\"ranks\">\n");
	for (int32_t r = 0; r < nr; r++) {
		double y = top + r * rh;
		double busy = tl->busy_ms[r], idle = tl->makespan_ms - busy;
		fprintf(f,
		        "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\" fill=\"#eeeeee\">"
		        "<title>rank %d: busy %.1f ms, idle %.1f ms, %d micro-batches</title></rect>\n",
		        left, y + rh * 0.1, tl->makespan_ms * sx, rh * 0.8, r, busy, idle < 0 ? 0 : idle,
		        tl->nmicro[r]);
		if (r % label_every == 0)
			fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"end\" font-size=\"%.1f\">%d</text>\n",
			        left - 6, y + rh * 0.8, rh < 11 ? 9.0 : 11.0, r);
	}
	fprintf(f, "</g>\n");

	/* group executions: one <g> per group, one box per rank of the group */
	fprintf(f, "<g class=\"groups\" stroke=\"#ffffff\" stroke-width=\"0.5\">\n");
	int64_t gi_in_order = 0;
	for (int32_t s = 0; s < plan->nslots; s++) {
		const sl_slot_t *slot = &plan->slots[s];
		for (int32_t k = 0; k < slot->ngroups; k++, gi_in_order++) {
			int64_t gi = slot->group_off + k;
			const sl_group_t *g = &plan->groups[gi];
			const int32_t *ranks = sl_group_ranks(plan, g);
			const sl_item_t *items = sl_group_items(plan, g);
			double resident = 0;
			int64_t tokens = 0;
			for (int32_t i = 0; i < g->nitems; i++) {
				if (items[i].seq < 0 || items[i].seq >= plan->nseqs)
					continue; /* parsed plans may name unknown ids */
				int64_t len = plan->seqs[items[i].seq].length;
				tokens += len;
				resident += sl_cost_resident(len, g->nranks, items[i].offload);
			}
			char rl[256];
			cli_format_ranks(ranks, g->nranks, rl, sizeof(rl));
			fprintf(f, "<g fill=\"%s\"><title>", cli_svg_color((size_t)gi_in_order));
			snprintf(buf, sizeof(buf),
			         "slot %d group %d: ranks %s; %d sequences, %lld tokens, %.0f tokens/rank; "
			         "start %.1f ms, %.1f ms",
			         s, k, rl, g->nitems, (long long)tokens, resident, tl->start_ms[gi],
			         tl->dur_ms[gi]);
			cli_xml_escape(f, buf);
			fprintf(f, "</title>\n");
			for (int32_t i = 0; i < g->nranks; i++)
				fprintf(f, "<rect x=\"%.2f\" y=\"%.2f\" width=\"%.2f\" height=\"%.2f\"/>\n",
				        left + tl->start_ms[gi] * sx, top + ranks[i] * rh + rh * 0.1,
				        tl->dur_ms[gi] * sx, rh * 0.8);
			fprintf(f, "</g>\n");
		}
	}
	fprintf(f, "</g>\n");

	/* ideal and step markers */
	if (isfinite(plan->ideal_ms)) {
		double x = left + plan->ideal_ms * sx;
		fprintf(f,
		        "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#d62728\" "
		        "stroke-dasharray=\"4,3\"><title>ideal %.1f ms</title></line>\n",
		        x, top - 4, x, top + plot_h + 4, plan->ideal_ms);
	}
	{
		double x = left + tl->makespan_ms * sx;
		fprintf(f,
		        "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"#333333\">"
		        "<title>last rank finishes at %.1f ms</title></line>\n",
		        x, top - 4, x, top + plot_h + 4, tl->makespan_ms);
	}
	fprintf(f, "</svg>\n");
	return ferror(f) ? sl_seterr(SL_EIO, "writing the SVG failed") : SL_OK;
}

sl_err cli_svg_lines(FILE *f, const char *title, const char *ylabel, const cli_series_t *series,
                     size_t nseries, size_t npoints)
{
	const double width = 1000, height = 520, left = 76, right = 200, top = 44, bottom = 56;
	double plot_w = width - left - right, plot_h = height - top - bottom;
	double ymax = 0;
	char buf[256];

	for (size_t s = 0; s < nseries; s++)
		for (size_t i = 0; i < npoints; i++)
			if (isfinite(series[s].y[i]) && series[s].y[i] > ymax)
				ymax = series[s].y[i];
	if (!(ymax > 0))
		ymax = 1;
	double ystep = nice_step(ymax, 8);
	double yend = ceil(ymax / ystep - 1e-9) * ystep;
	double xspan = npoints > 1 ? (double)(npoints - 1) : 1;
	double xstep = nice_step(xspan, 10);
	if (xstep < 1)
		xstep = 1;
#define X_OF(i) (left + (npoints > 1 ? (double)(i) / xspan * plot_w : plot_w / 2))
#define Y_OF(v) (top + plot_h - (v) / yend * plot_h)

	svg_open(f, width, height);
	fprintf(f, "<text x=\"%.0f\" y=\"24\" font-size=\"14\" font-weight=\"bold\">", left);
	cli_xml_escape(f, title);
	fprintf(f, "</text>\n");

	/* grid, ticks, axes */
	fprintf(f, "<g class=\"grid\" stroke=\"#e5e5e5\">\n");
	for (double v = 0; v <= yend + ystep * 1e-6; v += ystep)
		fprintf(f, "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\"/>\n", left, Y_OF(v),
		        left + plot_w, Y_OF(v));
	fprintf(f, "</g>\n<g class=\"yticks\" text-anchor=\"end\">\n");
	for (double v = 0; v <= yend + ystep * 1e-6; v += ystep) {
		tick_label(v, ystep, buf, sizeof(buf));
		fprintf(f, "<text x=\"%.2f\" y=\"%.2f\">%s</text>\n", left - 6, Y_OF(v) + 4, buf);
	}
	fprintf(f, "</g>\n<g class=\"xticks\" text-anchor=\"middle\">\n");
	for (double v = 0; v <= xspan + 1e-9 && npoints > 0; v += xstep)
		fprintf(f, "<text x=\"%.2f\" y=\"%.2f\">%.0f</text>\n", X_OF(v), top + plot_h + 16, v);
	fprintf(f, "</g>\n");
	fprintf(f,
	        "<g class=\"axes\" stroke=\"#333333\"><line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" "
	        "y2=\"%.2f\"/><line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\"/></g>\n",
	        left, top, left, top + plot_h, left, top + plot_h, left + plot_w, top + plot_h);
	fprintf(f, "<text x=\"%.2f\" y=\"%.2f\" text-anchor=\"middle\">step</text>\n",
	        left + plot_w / 2, top + plot_h + 38);
	fprintf(f, "<text x=\"18\" y=\"%.2f\" text-anchor=\"middle\" transform=\"rotate(-90 18 %.2f)\">",
	        top + plot_h / 2, top + plot_h / 2);
	cli_xml_escape(f, ylabel);
	fprintf(f, "</text>\n");

	/* one polyline per series, points carry tooltips */
	for (size_t s = 0; s < nseries; s++) {
		const char *color = series[s].dashed ? "#555555" : cli_svg_color(s);
		fprintf(f, "<g class=\"series\"><title>");
		cli_xml_escape(f, series[s].name);
		fprintf(f, "</title>\n<polyline fill=\"none\" stroke=\"%s\" stroke-width=\"1.6\"%s points=\"",
		        color, series[s].dashed ? " stroke-dasharray=\"5,4\"" : "");
		for (size_t i = 0; i < npoints; i++)
			if (isfinite(series[s].y[i]))
				fprintf(f, "%s%.2f,%.2f", i ? " " : "", X_OF(i), Y_OF(series[s].y[i]));
		fprintf(f, "\"/>\n");
		if (npoints <= 400)
			for (size_t i = 0; i < npoints; i++) {
				if (!isfinite(series[s].y[i]))
					continue;
				fprintf(f, "<circle cx=\"%.2f\" cy=\"%.2f\" r=\"2\" fill=\"%s\"><title>",
				        X_OF(i), Y_OF(series[s].y[i]), color);
				snprintf(buf, sizeof(buf), "%s, step %zu: %.1f", series[s].name, i,
				         series[s].y[i]);
				cli_xml_escape(f, buf);
				fprintf(f, "</title></circle>\n");
			}
		fprintf(f, "</g>\n");
	}

	/* legend */
	fprintf(f, "<g class=\"legend\">\n");
	for (size_t s = 0; s < nseries; s++) {
		double y = top + 10 + (double)s * 20;
		const char *color = series[s].dashed ? "#555555" : cli_svg_color(s);
		fprintf(f,
		        "<line x1=\"%.2f\" y1=\"%.2f\" x2=\"%.2f\" y2=\"%.2f\" stroke=\"%s\" "
		        "stroke-width=\"2\"%s/><text x=\"%.2f\" y=\"%.2f\">",
		        left + plot_w + 16, y, left + plot_w + 40, y, color,
		        series[s].dashed ? " stroke-dasharray=\"5,4\"" : "", left + plot_w + 46, y + 4);
		cli_xml_escape(f, series[s].name);
		fprintf(f, "</text>\n");
	}
	fprintf(f, "</g>\n</svg>\n");
#undef X_OF
#undef Y_OF
	return ferror(f) ? sl_seterr(SL_EIO, "writing the SVG failed") : SL_OK;
}
