/* SPDX-License-Identifier: MIT */
/*
 * events: the journal form of the engine's events (enum eng_event in
 * ACTION_LOG actions): which log event (MESSAGE_ID), priority and wording.
 * The engine decides, this table words it; the cycle logs it.
 */
#pragma once

#include "log.h"
#include "model.h"

/* The log event and syslog priority of ACTION_LOG action a
 * (LOG_EV_NONE / LOG_INFO for an unknown event). */
enum log_event events_log_event(const struct action *a);
int events_priority(const struct action *a);

/* Its one-line message, malloc'd; NULL on -ENOMEM. */
char *events_message(const struct action *a);

/* Logs a (with ORDER_ID=, CUSTOMER_KEY=, PARTNER_ACCOUNT=). */
void events_log_action(const struct action *a);
