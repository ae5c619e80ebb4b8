/* SPDX-License-Identifier: MIT */
#include "apiutil.h"

#include <ctype.h>
#include <string.h>

const char *api_json_str(const json_t *obj, const char *key) {
        const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
        return json_is_string(v) ? json_string_value(v) : NULL;
}

const json_t *api_json_obj(const json_t *obj, const char *key) {
        const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
        return json_is_object(v) ? v : NULL;
}

const json_t *api_json_arr(const json_t *obj, const char *key) {
        const json_t *v = json_is_object(obj) ? json_object_get(obj, key) : NULL;
        return json_is_array(v) ? v : NULL;
}

bool api_guid_valid(const char *s) {
        if (!s || strlen(s) != 36)
                return false;
        for (int i = 0; i < 36; i++) {
                if (i == 8 || i == 13 || i == 18 || i == 23) {
                        if (s[i] != '-')
                                return false;
                } else if (!isxdigit((unsigned char) s[i]))
                        return false;
        }
        return true;
}

char *api_url_path(const char *url) {
        const char *s = url ? strstr(url, "://") : NULL;
        s = s ? strchr(s + 3, '/') : NULL;
        if (!s)
                return strdup("/");
        return strndup(s, strcspn(s, "?#"));
}
