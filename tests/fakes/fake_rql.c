/* SPDX-License-Identifier: MIT */
/*
 * fakeplatform: the RQL subset of the Marketplace API.  Operators eq ne gt
 * ge lt le ilike in out and or not, values "double", 'single' or bare,
 * null(); shorthand prop=value.  Enum values (status, type) compare
 * case-insensitively, as the real API accepts eq(status,processing).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "fake.h"
#include "util.h"

#define RQL_MAX_DEPTH 32

enum rql_op { RQL_AND, RQL_OR, RQL_NOT, RQL_EQ, RQL_NE, RQL_GT, RQL_GE, RQL_LT, RQL_LE,
              RQL_ILIKE, RQL_IN, RQL_OUT };

static const char *const op_names[] = {
        [RQL_AND] = "and", [RQL_OR] = "or", [RQL_NOT] = "not", [RQL_EQ] = "eq",
        [RQL_NE] = "ne", [RQL_GT] = "gt", [RQL_GE] = "ge", [RQL_LT] = "lt",
        [RQL_LE] = "le", [RQL_ILIKE] = "ilike", [RQL_IN] = "in", [RQL_OUT] = "out",
};

struct rql_node {
        enum rql_op op;
        char *prop;
        char **vals;            /* NULL entry = null() */
        size_t n_vals;
        struct rql_node **kids;
        size_t n_kids;
};

struct parser {
        const char *p;
        const char *err;
        int depth;
};

struct rql_node *rql_free(struct rql_node *n) {
        if (!n)
                return NULL;
        free(n->prop);
        for (size_t i = 0; i < n->n_vals; i++)
                free(n->vals[i]);
        free(n->vals);
        for (size_t i = 0; i < n->n_kids; i++)
                rql_free(n->kids[i]);
        free(n->kids);
        free(n);
        return NULL;
}

static int push_str(char ***arr, size_t *n, char *item) {
        char **a = realloc(*arr, (*n + 1) * sizeof(*a));
        if (!a)
                return -ENOMEM;
        a[(*n)++] = item;
        *arr = a;
        return 0;
}

static int push_node(struct rql_node ***arr, size_t *n, struct rql_node *item) {
        struct rql_node **a = realloc(*arr, (*n + 1) * sizeof(*a));
        if (!a)
                return -ENOMEM;
        a[(*n)++] = item;
        *arr = a;
        return 0;
}

/* Reads a quoted or bare token; *ret = NULL for null(). */
static int parse_value(struct parser *ps, char **ret, bool *ret_null) {
        const char *p = ps->p, *start;
        *ret_null = false;

        if (*p == '"' || *p == '\'') {
                char q = *p++;
                start = p;
                while (*p && *p != q)
                        p++;
                if (!*p)
                        return ps->err = "Unterminated quoted value.", -EINVAL;
                *ret = strndup(start, (size_t) (p - start));
                ps->p = p + 1;
                return *ret ? 0 : -ENOMEM;
        }
        start = p;
        while (*p && *p != ',' && *p != ')' && *p != '(')
                p++;
        if (strncmp(start, "null()", 6) == 0 || strncmp(start, "empty()", 7) == 0) {
                ps->p = start + (start[0] == 'n' ? 6 : 7);
                *ret = NULL;
                *ret_null = true;
                return 0;
        }
        if (*p == '(')
                return ps->err = "Unexpected '(' in a value.", -EINVAL;
        *ret = strndup(start, (size_t) (p - start));
        ps->p = p;
        return *ret ? 0 : -ENOMEM;
}

static int expect(struct parser *ps, char c) {
        if (*ps->p != c) {
                ps->err = c == ')' ? "Missing ')'." : c == '(' ? "Missing '('." : "Missing ','.";
                return -EINVAL;
        }
        ps->p++;
        return 0;
}

static int parse_values(struct parser *ps, struct rql_node *n, bool list) {
        int r;

        if (list && (r = expect(ps, '(')) < 0)
                return r;
        for (;;) {
                char *v;
                bool isnull;
                r = parse_value(ps, &v, &isnull);
                if (r < 0)
                        return r;
                r = push_str(&n->vals, &n->n_vals, v);
                if (r < 0) {
                        free(v);
                        return r;
                }
                if (!list || *ps->p != ',')
                        break;
                ps->p++;
        }
        return list ? expect(ps, ')') : 0;
}

static struct rql_node *parse_node(struct parser *ps);

static int parse_args(struct parser *ps, struct rql_node *n) {
        int r;

        if (n->op <= RQL_NOT) {
                do {
                        struct rql_node *k = parse_node(ps);
                        if (!k)
                                return -EINVAL;
                        r = push_node(&n->kids, &n->n_kids, k);
                        if (r < 0)
                                return rql_free(k), r;
                } while (n->op != RQL_NOT && *ps->p == ',' && ps->p++);
                return 0;
        }
        size_t len = strcspn(ps->p, ",()");
        if (len == 0)
                return ps->err = "Missing property name.", -EINVAL;
        n->prop = strndup(ps->p, len);
        ps->p += len;
        if ((r = expect(ps, ',')) < 0)
                return r;
        return parse_values(ps, n, n->op == RQL_IN || n->op == RQL_OUT);
}

static struct rql_node *parse_node(struct parser *ps) {
        size_t len = strcspn(ps->p, "(),");
        struct rql_node *n;
        size_t i;

        if (++ps->depth > RQL_MAX_DEPTH) {
                ps->err = "Expression nested too deeply.";
                return NULL;
        }
        for (i = 0; i < sizeof(op_names) / sizeof(op_names[0]); i++)
                if (strlen(op_names[i]) == len && strncmp(ps->p, op_names[i], len) == 0)
                        break;
        if (i == sizeof(op_names) / sizeof(op_names[0]) || ps->p[len] != '(') {
                ps->err = "Unknown expression group.";
                return NULL;
        }
        n = calloc(1, sizeof(*n));
        if (!n)
                return NULL;
        n->op = (enum rql_op) i;
        ps->p += len + 1;
        if (parse_args(ps, n) < 0 || expect(ps, ')') < 0)
                return rql_free(n);
        ps->depth--;
        return n;
}

int rql_parse(const char *text, struct rql_node **ret, char **ret_err) {
        struct parser ps = { .p = text };
        struct rql_node *n;

        *ret_err = NULL;
        /* shorthand prop=value */
        const char *eq = strchr(text, '=');
        if (eq && !strchr(text, '(')) {
                n = calloc(1, sizeof(*n));
                if (!n)
                        return -ENOMEM;
                n->op = RQL_EQ;
                n->prop = strndup(text, (size_t) (eq - text));
                ps.p = eq + 1;
                if (parse_values(&ps, n, false) < 0 || *ps.p) {
                        rql_free(n);
                        *ret_err = strdup("Invalid equals shortcut expression.");
                        return -EINVAL;
                }
                *ret = n;
                return 0;
        }
        n = parse_node(&ps);
        if (n && *ps.p) {
                ps.err = "Unexpected characters after the expression.";
                n = rql_free(n);
        }
        if (!n) {
                *ret_err = strdup(ps.err ? ps.err : "Out of memory.");
                return -EINVAL;
        }
        *ret = n;
        return 0;
}

/* Combines the query's RQL segments (everything that is not a known
 * parameter) with and(). */
int rql_from_query(const struct fake_req *rq, struct rql_node **ret, char **ret_err) {
        static const char *const params[] = { "limit=", "offset=", "select=", "order=" };
        struct rql_node *all = NULL;
        int r;

        *ret = NULL;
        *ret_err = NULL;
        for (size_t i = 0; i < rq->n_segs; i++) {
                const char *seg = rq->segs[i];
                bool param = false;
                struct rql_node *n;

                for (size_t k = 0; k < sizeof(params) / sizeof(params[0]); k++)
                        param |= strncmp(seg, params[k], strlen(params[k])) == 0;
                if (param || !*seg)
                        continue;
                r = rql_parse(seg, &n, ret_err);
                if (r < 0)
                        return rql_free(all), r;
                if (!all) {
                        all = calloc(1, sizeof(*all));
                        if (!all)
                                return rql_free(n), -ENOMEM;
                        all->op = RQL_AND;
                }
                if (push_node(&all->kids, &all->n_kids, n) < 0)
                        return rql_free(n), rql_free(all), -ENOMEM;
        }
        *ret = all;
        return 0;
}

json_t *rql_lookup(json_t *obj, const char *dotted) {
        char buf[256];
        char *save = NULL, *tok;

        if (strlen(dotted) >= sizeof(buf))
                return NULL;
        strcpy(buf, dotted);
        for (tok = strtok_r(buf, ".", &save); tok && obj; tok = strtok_r(NULL, ".", &save))
                obj = json_object_get(obj, tok);
        return obj;
}

static bool is_enum_prop(const char *prop) {
        const char *last = strrchr(prop, '.');
        last = last ? last + 1 : prop;
        return strcmp(last, "status") == 0 || strcmp(last, "type") == 0;
}

/* Scalar to text; false for null/missing/containers. */
static bool scalar_text(json_t *v, char *buf, size_t n) {
        if (json_is_string(v))
                snprintf(buf, n, "%s", json_string_value(v));
        else if (json_is_integer(v))
                snprintf(buf, n, "%lld", (long long) json_integer_value(v));
        else if (json_is_real(v))
                snprintf(buf, n, "%g", json_real_value(v));
        else if (json_is_boolean(v))
                snprintf(buf, n, "%s", json_is_true(v) ? "true" : "false");
        else
                return false;
        return true;
}

static int compare(json_t *v, const char *val, bool ci) {
        char buf[512];

        if (json_is_number(v))
                return json_number_value(v) < strtod(val, NULL) ? -1 :
                       json_number_value(v) > strtod(val, NULL) ? 1 : 0;
        if (!scalar_text(v, buf, sizeof(buf)))
                return -2;
        return ci ? strcasecmp(buf, val) : strcmp(buf, val);
}

/* '*' wildcard, '\*' literal star, case-insensitive. */
static bool ilike(const char *s, const char *pat) {
        if (*pat == '\0')
                return *s == '\0';
        if (*pat == '*') {
                for (;; s++) {
                        if (ilike(s, pat + 1))
                                return true;
                        if (!*s)
                                return false;
                }
        }
        if (pat[0] == '\\' && pat[1] == '*')
                pat++;
        if (!*s || (*s != *pat && (unsigned) (*s | 0x20) != (unsigned) (*pat | 0x20)))
                return false;
        return ilike(s + 1, pat + 1);
}

static bool value_eq(json_t *v, const char *val, bool ci) {
        if (!val)
                return !v || json_is_null(v);
        return v && !json_is_null(v) && compare(v, val, ci) == 0;
}

static bool match_leaf(const struct rql_node *n, json_t *obj) {
        json_t *v = rql_lookup(obj, n->prop);
        bool ci = is_enum_prop(n->prop);
        char buf[512];
        int c;

        switch (n->op) {
        case RQL_EQ:
                return value_eq(v, n->vals[0], ci);
        case RQL_NE:
                return !value_eq(v, n->vals[0], ci);
        case RQL_IN:
        case RQL_OUT:
                for (size_t i = 0; i < n->n_vals; i++)
                        if (value_eq(v, n->vals[i], ci))
                                return n->op == RQL_IN;
                return n->op == RQL_OUT;
        case RQL_ILIKE:
                return n->vals[0] && scalar_text(v, buf, sizeof(buf)) && ilike(buf, n->vals[0]);
        default:
                if (!n->vals[0] || !v || (c = compare(v, n->vals[0], ci)) == -2)
                        return false;
                return n->op == RQL_GT ? c > 0 : n->op == RQL_GE ? c >= 0 :
                       n->op == RQL_LT ? c < 0 : c <= 0;
        }
}

bool rql_match(const struct rql_node *n, json_t *obj) {
        if (!n)
                return true;
        switch (n->op) {
        case RQL_AND:
                for (size_t i = 0; i < n->n_kids; i++)
                        if (!rql_match(n->kids[i], obj))
                                return false;
                return true;
        case RQL_OR:
                for (size_t i = 0; i < n->n_kids; i++)
                        if (rql_match(n->kids[i], obj))
                                return true;
                return false;
        case RQL_NOT:
                return !rql_match(n->kids[0], obj);
        default:
                return match_leaf(n, obj);
        }
}

/* ---- order= ---- */

struct sort_item {
        json_t *obj;
        size_t idx;
        char **text;            /* the item's value of each key, as text */
};

struct sort_keys {
        char **keys;            /* "+a.b" / "-a" / "a" */
        size_t n;
};

static int sort_cmp(const void *a, const void *b, void *userdata) {
        const struct sort_item *x = a, *y = b;
        const struct sort_keys *sk = userdata;

        for (size_t i = 0; i < sk->n; i++) {
                int c = strcmp(x->text[i], y->text[i]);
                if (c)
                        return sk->keys[i][0] == '-' ? -c : c;
        }
        return x->idx < y->idx ? -1 : x->idx > y->idx;  /* stable */
}

/* Looks every key up once per item (not once per comparison). */
static int sort_texts(struct sort_item *it, const struct sort_keys *sk) {
        it->text = calloc(sk->n, sizeof(*it->text));
        if (!it->text)
                return -ENOMEM;
        for (size_t i = 0; i < sk->n; i++) {
                const char *k = sk->keys[i];
                char buf[512] = "";
                if (k[0] == '-' || k[0] == '+')
                        k++;
                scalar_text(rql_lookup(it->obj, k), buf, sizeof(buf));
                it->text[i] = strdup(buf);
                if (!it->text[i])
                        return -ENOMEM;
        }
        return 0;
}

/* Sorts items in place by order= ("+a,-b.c"). */
int rql_sort(json_t **items, size_t n, const char *order, char **ret_err) {
        struct sort_keys sk = { 0 };
        struct sort_item *tmp;
        char *copy, *save = NULL, *tok;
        int r = 0;

        *ret_err = NULL;
        if (!order || !*order || n < 2)
                return 0;
        copy = strdup(order);
        tmp = calloc(n, sizeof(*tmp));
        if (!copy || !tmp) {
                r = -ENOMEM;
                goto out;
        }
        for (tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save))
                if (push_str(&sk.keys, &sk.n, tok) < 0) {
                        r = -ENOMEM;
                        goto out;
                }
        for (size_t i = 0; i < n; i++) {
                tmp[i] = (struct sort_item) { items[i], i, NULL };
                if (sort_texts(&tmp[i], &sk) < 0) {
                        r = -ENOMEM;
                        goto out;
                }
        }
        qsort_r(tmp, n, sizeof(*tmp), sort_cmp, &sk);
        for (size_t i = 0; i < n; i++)
                items[i] = tmp[i].obj;
out:
        for (size_t i = 0; tmp && i < n; i++) {
                for (size_t k = 0; tmp[i].text && k < sk.n; k++)
                        free(tmp[i].text[k]);
                free(tmp[i].text);
        }
        free(sk.keys);
        free(copy);
        free(tmp);
        return r;
}
