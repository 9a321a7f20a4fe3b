package goaws

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"

	sqstypes "github.com/aws/aws-sdk-go-v2/service/sqs/types"
)

type sqstypesName = sqstypes.QueueAttributeName

// adapter serves the AWS JSON 1.0 protocol of SQS (what aws-sdk-go-v2/service/sqs speaks) by
// calling goaws with the Query protocol and translating both ways.
type adapter struct {
	target string
	client *http.Client
}

// jsonReq is the union of the request fields of the translated actions.
type jsonReq struct {
	QueueUrl                    string
	QueueName                   string
	MessageBody                 string
	DelaySeconds                *int
	ReceiptHandle               string
	MaxNumberOfMessages         *int
	WaitTimeSeconds             *int
	VisibilityTimeout           *int
	AttributeNames              []string
	MessageSystemAttributeNames []string
	Attributes                  map[string]string
	Entries                     []struct {
		Id                string
		MessageBody       string
		ReceiptHandle     string
		DelaySeconds      *int
		VisibilityTimeout *int
	}
}

func (a *adapter) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	target := r.Header.Get("X-Amz-Target")
	action, ok := strings.CutPrefix(target, "AmazonSQS.")
	if !ok {
		jsonError(w, http.StatusBadRequest, "InvalidAction", "goaws adapter: not an AWS JSON SQS request (X-Amz-Target "+target+")")
		return
	}
	var req jsonReq
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil && err != io.EOF {
		jsonError(w, http.StatusBadRequest, "MalformedInput", err.Error())
		return
	}
	if action == "ChangeMessageVisibilityBatch" { // goaws has no batch form: one call per entry
		var ok, failed []map[string]any
		for _, e := range req.Entries {
			f := url.Values{"Action": {"ChangeMessageVisibility"}, "QueueUrl": {req.QueueUrl}, "ReceiptHandle": {e.ReceiptHandle}}
			if e.VisibilityTimeout != nil {
				f.Set("VisibilityTimeout", strconv.Itoa(*e.VisibilityTimeout))
			}
			if _, code, msg, err := a.call(f); err != nil || code != "" {
				failed = append(failed, map[string]any{"Id": e.Id, "Code": code, "Message": fmt.Sprint(msg, err), "SenderFault": true})
			} else {
				ok = append(ok, map[string]any{"Id": e.Id})
			}
		}
		writeJSON(w, map[string]any{"Successful": ok, "Failed": failed})
		return
	}
	f := url.Values{"Action": {action}}
	set := func(k, v string) {
		if v != "" {
			f.Set(k, v)
		}
	}
	seti := func(k string, v *int) {
		if v != nil {
			f.Set(k, strconv.Itoa(*v))
		}
	}
	set("QueueUrl", req.QueueUrl)
	set("QueueName", req.QueueName)
	set("MessageBody", req.MessageBody)
	set("ReceiptHandle", req.ReceiptHandle)
	seti("DelaySeconds", req.DelaySeconds)
	seti("MaxNumberOfMessages", req.MaxNumberOfMessages)
	seti("WaitTimeSeconds", req.WaitTimeSeconds)
	seti("VisibilityTimeout", req.VisibilityTimeout)
	for i, n := range append(req.AttributeNames, req.MessageSystemAttributeNames...) {
		f.Set(fmt.Sprintf("AttributeName.%d", i+1), n)
	}
	keys := make([]string, 0, len(req.Attributes))
	for k := range req.Attributes {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for i, k := range keys {
		f.Set(fmt.Sprintf("Attribute.%d.Name", i+1), k)
		f.Set(fmt.Sprintf("Attribute.%d.Value", i+1), req.Attributes[k])
	}
	entry := map[string]string{"SendMessageBatch": "SendMessageBatchRequestEntry", "DeleteMessageBatch": "DeleteMessageBatchRequestEntry"}[action]
	for i, e := range req.Entries {
		p := fmt.Sprintf("%s.%d.", entry, i+1)
		f.Set(p+"Id", e.Id)
		if e.MessageBody != "" {
			f.Set(p+"MessageBody", e.MessageBody)
		}
		if e.ReceiptHandle != "" {
			f.Set(p+"ReceiptHandle", e.ReceiptHandle)
		}
		if e.DelaySeconds != nil {
			f.Set(p+"DelaySeconds", strconv.Itoa(*e.DelaySeconds))
		}
	}
	body, code, msg, err := a.call(f)
	if err != nil {
		jsonError(w, http.StatusInternalServerError, "InternalError", err.Error())
		return
	}
	if code != "" {
		jsonError(w, http.StatusBadRequest, code, msg)
		return
	}
	out, err := translate(action, body)
	if err != nil {
		jsonError(w, http.StatusInternalServerError, "InternalError", "goaws adapter: "+action+": "+err.Error())
		return
	}
	writeJSON(w, out)
}

// call posts the Query form to goaws; code and msg are set for an SQS error response.
func (a *adapter) call(f url.Values) (body []byte, code, msg string, err error) {
	resp, err := a.client.Post(a.target+"/", "application/x-www-form-urlencoded", strings.NewReader(f.Encode()))
	if err != nil {
		return nil, "", "", err
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	if err != nil {
		return nil, "", "", err
	}
	if resp.StatusCode >= 300 {
		var e struct {
			Error struct{ Code, Message string } `xml:"Error"`
		}
		if xml.Unmarshal(body, &e) == nil && e.Error.Code != "" {
			return nil, e.Error.Code, e.Error.Message, nil
		}
		return nil, "InternalError", fmt.Sprintf("goaws status %d: %s", resp.StatusCode, bytes.TrimSpace(body)), nil
	}
	return body, "", "", nil
}

type xmlAttr struct{ Name, Value string }

// translate turns goaws's XML response of action into the JSON protocol's.
func translate(action string, body []byte) (any, error) {
	switch action {
	case "CreateQueue", "GetQueueUrl":
		var v struct {
			Created string `xml:"CreateQueueResult>QueueUrl"`
			Got     string `xml:"GetQueueUrlResult>QueueUrl"`
		}
		if err := xml.Unmarshal(body, &v); err != nil {
			return nil, err
		}
		return map[string]string{"QueueUrl": v.Created + v.Got}, nil
	case "SendMessage":
		var v struct {
			R struct{ MessageId, MD5OfMessageBody string } `xml:"SendMessageResult"`
		}
		if err := xml.Unmarshal(body, &v); err != nil {
			return nil, err
		}
		return map[string]string{"MessageId": v.R.MessageId, "MD5OfMessageBody": v.R.MD5OfMessageBody}, nil
	case "SendMessageBatch", "DeleteMessageBatch":
		var res struct {
			OK []struct {
				Id, MessageId, MD5OfMessageBody string
			} `xml:"SendMessageBatchResult>SendMessageBatchResultEntry"`
			DOK []struct{ Id string } `xml:"DeleteMessageBatchResult>DeleteMessageBatchResultEntry"`
			Bad []struct {
				Id, Code, Message string
				SenderFault       bool
			} `xml:"SendMessageBatchResult>BatchResultErrorEntry"`
			DBad []struct {
				Id, Code, Message string
				SenderFault       bool
			} `xml:"DeleteMessageBatchResult>BatchResultErrorEntry"`
		}
		if err := xml.Unmarshal(body, &res); err != nil {
			return nil, err
		}
		ok, failed := []map[string]any{}, []map[string]any{}
		for _, e := range res.OK {
			ok = append(ok, map[string]any{"Id": e.Id, "MessageId": e.MessageId, "MD5OfMessageBody": e.MD5OfMessageBody})
		}
		for _, e := range res.DOK {
			ok = append(ok, map[string]any{"Id": e.Id})
		}
		for _, e := range append(res.Bad, res.DBad...) {
			failed = append(failed, map[string]any{"Id": e.Id, "Code": e.Code, "Message": e.Message, "SenderFault": e.SenderFault})
		}
		return map[string]any{"Successful": ok, "Failed": failed}, nil
	case "ReceiveMessage":
		var v struct {
			Msgs []struct {
				MessageId, ReceiptHandle, MD5OfBody, Body string
				Attribute                                 []xmlAttr
			} `xml:"ReceiveMessageResult>Message"`
		}
		if err := xml.Unmarshal(body, &v); err != nil {
			return nil, err
		}
		msgs := []map[string]any{}
		for _, m := range v.Msgs {
			attrs := map[string]string{}
			for _, a := range m.Attribute {
				attrs[a.Name] = a.Value
			}
			msgs = append(msgs, map[string]any{"MessageId": m.MessageId, "ReceiptHandle": m.ReceiptHandle,
				"MD5OfBody": m.MD5OfBody, "Body": m.Body, "Attributes": attrs})
		}
		return map[string]any{"Messages": msgs}, nil
	case "GetQueueAttributes":
		var v struct {
			Attrs []xmlAttr `xml:"GetQueueAttributesResult>Attribute"`
		}
		if err := xml.Unmarshal(body, &v); err != nil {
			return nil, err
		}
		attrs := map[string]string{}
		for _, a := range v.Attrs {
			attrs[a.Name] = a.Value
		}
		return map[string]any{"Attributes": attrs}, nil
	}
	return map[string]any{}, nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	_ = json.NewEncoder(w).Encode(v)
}

func jsonError(w http.ResponseWriter, status int, code, msg string) {
	w.Header().Set("Content-Type", "application/x-amz-json-1.0")
	w.Header().Set("x-amzn-query-error", code+";Sender")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"__type": "com.amazonaws.sqs#" + code, "message": msg})
}
