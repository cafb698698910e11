/* Long operations as tasks: a bounded table on the node that accepted the
 * request (the leader then); the id names that node, so any node can
 * forward a lookup to it (routes.c). A new task takes a free slot, else replaces the
 * oldest finished one; when every slot runs, new long operations are
 * refused (503) rather than forgetting one in flight. */
#include <stdlib.h>
#include <string.h>

#include "api_internal.h"

static const char *state_name(enum api_task_state s)
{
	switch (s) {
	case API_TASK_RUNNING:
		return "running";
	case API_TASK_DONE:
		return "done";
	default:
		return "failed";
	}
}

struct api_task *api_task_new(struct api_tasks *ts, const char *op, int64_t now)
{
	struct api_task *t = NULL;
	if (ts->n < API_MAX_TASKS) {
		t = &ts->v[ts->n++];
	} else {
		for (size_t i = 0; i < ts->n; i++) {
			struct api_task *c = &ts->v[i];
			if (c->state != API_TASK_RUNNING &&
			    (!t || c->finished < t->finished))
				t = c;
		}
		if (!t)
			return NULL;
		json_decref(t->result);
	}
	memset(t, 0, sizeof(*t));
	if (!ts->next_seq)
		ts->next_seq = 1;
	t->id = (ts->node << API_TASK_NODE_SHIFT) | ts->next_seq++;
	snprintf(t->op, sizeof(t->op), "%s", op);
	t->state = API_TASK_RUNNING;
	t->created = now;
	return t;
}

struct api_task *api_task_find(struct api_tasks *ts, uint64_t id)
{
	for (size_t i = 0; i < ts->n; i++)
		if (ts->v[i].id == id)
			return &ts->v[i];
	return NULL;
}

json_t *api_task_json(const struct api_task *t)
{
	json_t *j =
	    json_pack("{s:I, s:s, s:s, s:f, s:I}", "id", (json_int_t)t->id,
		      "op", t->op, "state", state_name(t->state), "progress",
		      t->progress, "created", (json_int_t)t->created);
	if (t->state != API_TASK_RUNNING)
		json_object_set_new(j, "finished", json_integer(t->finished));
	if (t->result)
		json_object_set(j, "result", t->result);
	if (t->state == API_TASK_FAILED)
		json_object_set_new(j, "error", json_string(t->error));
	return j;
}

void api_tasks_free(struct api_tasks *ts)
{
	for (size_t i = 0; i < ts->n; i++)
		json_decref(ts->v[i].result);
	ts->n = 0;
}
